"""SD-WebUI backends: the HTTP client and what it returns."""

from bot.webui.client import GenerationResult, Progress, WebUIClient, sniff_image_type

__all__ = ["GenerationResult", "Progress", "WebUIClient", "sniff_image_type"]
