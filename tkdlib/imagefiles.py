"""Image files into uint8 arrays: the files of a tar archive read in place, decoding, stacking.

A *file listing* is an iterator of ``(name, read)`` pairs: `name` is the file's path inside the
archive or relative to its folder (``/``-separated), `read()` returns its bytes (call it before
moving to the next pair: an archive is read as a stream). Readers match names and read only the
files they need.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

FileListing = Iterator[tuple[str, Callable[[], bytes]]]


def archive_files(archive: str | Path) -> FileListing:
    """The regular files of a (possibly compressed) tar archive, in archive order, without extracting it."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                yield member.name, lambda member=member: tar.extractfile(member).read()


def decode_image(data: bytes) -> np.ndarray:
    """An encoded image (JPEG, PNG, …) as uint8 (H, W, 3) RGB; greyscale and other modes are converted."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def stack_images(images: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Stack (H, W, 3) images into (N, H, W, 3); a ValueError names the first image whose size differs."""
    if not images:
        raise ValueError("no images to stack")
    for image, name in zip(images, names):
        if image.shape != images[0].shape:
            raise ValueError(f"{name}: image of shape {image.shape}, but {names[0]} has {images[0].shape}; all images must have one size.")
    return np.stack(images)
