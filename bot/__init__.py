"""drawbridge core: parsing, presets, fair queue, dispatcher over SD-WebUI backends, quotas."""

__version__ = "0.1.0"
