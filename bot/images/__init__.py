"""What chat users can send as pictures: ingest, mask derivation and the image store."""

from bot.images.ingest import Ingested, image_size, ingest, snap8
from bot.images.masks import MaskResult, derive_mask, mask_from_alpha
from bot.images.store import ImageStore

__all__ = [
    "ImageStore",
    "Ingested",
    "MaskResult",
    "derive_mask",
    "image_size",
    "ingest",
    "mask_from_alpha",
    "snap8",
]
