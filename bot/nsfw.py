"""NSFW_CHECK: nudenet's detector (its ONNX model ships in the wheel: no download) on the
bot's CPU, loaded once on first use and run in a worker thread, never on the event loop.

A picture's score is the highest confidence among the detector's "exposed" classes; it is
flagged at NSFW_THRESHOLD or above. nudenet is the optional extra `drawbridge[nsfw]`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from typing import Any

from bot.errors import DrawbridgeError

EXPOSED = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


class NsfwUnavailable(DrawbridgeError):
    """NSFW_CHECK is on but nudenet is not installed (operator-facing)."""

    key = "nsfw.missing"


def available() -> bool:
    """Whether nudenet can be imported."""
    return importlib.util.find_spec("nudenet") is not None


class NsfwCheck:
    """The classifier, shared by every job of this process."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._detector: Any = None
        self._loading = threading.Lock()  # two first pictures at once load it once

    def _load(self) -> Any:
        with self._loading:
            if self._detector is None:
                from nudenet import NudeDetector

                self._detector = NudeDetector()
            return self._detector

    def score_now(self, png: bytes) -> float:
        """The picture's score (blocking: call it in a thread)."""
        detections = self._load().detect(png)
        return max((float(d["score"]) for d in detections if d["class"] in EXPOSED), default=0.0)

    async def score(self, png: bytes) -> float:
        """The picture's score, computed off the event loop."""
        return await asyncio.to_thread(self.score_now, png)

    async def flagged(self, png: bytes) -> bool:
        """Whether the picture is at or above NSFW_THRESHOLD."""
        return await self.score(png) >= self.threshold
