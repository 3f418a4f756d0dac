"""Content-addressed picture storage, so jobs and buttons refer to images by a short key.

Layout: ``root/ab/cdef….png`` where ``abcdef…`` is the sha256 of the bytes. Writes are atomic
(temp file + os.replace) so a crash never leaves half a picture under a valid key. Retention
deletes by mtime; storing a picture again touches it, so a reused image is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

from bot.errors import ImageError

_KEY = re.compile(r"[0-9a-f]{64}")
_SUFFIX = ".png"
_TEMP_PREFIX = ".tmp-"


class ImageStore:
    """Pictures on disk under their sha256; synchronous, so call it via asyncio.to_thread."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, data: bytes) -> str:
        """Store bytes (idempotently) and return their hex key."""
        key = hashlib.sha256(data).hexdigest()
        target = self.path(key)
        try:
            os.utime(target)  # already stored: refresh its age so retention keeps it
            return key
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return key

    def get(self, key: str) -> bytes:
        """The stored bytes; ImageError("image.expired") if they are gone."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ImageError("image.expired") from None

    def exists(self, key: str) -> bool:
        """Whether the key is stored."""
        return self.path(key).is_file()

    def path(self, key: str) -> Path:
        """Where the key lives; ValueError for anything but 64 lowercase hex digits."""
        if not isinstance(key, str) or _KEY.fullmatch(key) is None:
            raise ValueError(f"not an image key: {key!r}")
        return self.root / key[:2] / (key[2:] + _SUFFIX)

    def delete_older_than(self, seconds: float) -> int:
        """Delete pictures not stored or re-stored for `seconds`; return how many went."""
        cutoff = time.time() - seconds
        deleted = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if not (folder.is_dir() and re.fullmatch(r"[0-9a-f]{2}", folder.name)):
                continue  # only our own layout is touched, whatever else lives in root
            for entry in folder.iterdir():
                ours = entry.name.endswith(_SUFFIX) and _KEY.fullmatch(
                    folder.name + entry.name[: -len(_SUFFIX)]
                )
                leftover = entry.name.startswith(_TEMP_PREFIX)  # from a crash mid-write
                if not (ours or leftover):
                    continue
                try:
                    if entry.stat().st_mtime >= cutoff:
                        continue
                    entry.unlink()
                except FileNotFoundError:
                    continue  # removed concurrently
                deleted += 1 if ours else 0
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        return deleted
