"""SD-WebUI backends: the HTTP client, what it returns, and which fork a backend is."""

from bot.webui.client import (
    GenerationResult,
    Progress,
    TaskProgress,
    WebUIClient,
    sniff_image_type,
)
from bot.webui.flavour import Flavour, Identity, identify

__all__ = [
    "Flavour",
    "GenerationResult",
    "Identity",
    "Progress",
    "TaskProgress",
    "WebUIClient",
    "identify",
    "sniff_image_type",
]
