"""Small file helpers: atomic writes, gzip-compressed torch files and checksums.

Every record, checkpoint and cache file of the project is written through
`atomic_write`, so an interrupted process leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON with sorted keys, atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


GZIP_SUFFIX = ".gz"  # a torch file whose name ends so is gzip-compressed (`save_torch`)
GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of every gzip stream


@contextlib.contextmanager
def atomic_gzip_write(path: str | Path) -> Iterator[IO[bytes]]:
    """`atomic_write` through gzip (level 9, no timestamp: the same bytes give the same file)."""
    with atomic_write(path, "wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as packed:
        yield packed


def save_torch(path: str | Path, obj: Any) -> None:
    """`torch.save` `obj` to `path`, atomically; gzip-compressed (`atomic_gzip_write`) when the
    name ends in `GZIP_SUFFIX`."""
    compressed = Path(path).name.endswith(GZIP_SUFFIX)
    with atomic_gzip_write(path) if compressed else atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def load_torch(path: str | Path) -> Any:
    """`torch.load` (CPU, ``weights_only``) the file at `path`, gzip-compressed or not (told by
    its first bytes, whatever its name). Raises what `torch.load`, `gzip` and `zlib` raise for a
    corrupt or truncated file."""
    with open(path, "rb") as handle:
        compressed = handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    if not compressed:
        return torch.load(path, map_location="cpu", weights_only=True)
    with gzip.open(path, "rb") as packed:
        return torch.load(io.BytesIO(packed.read()), map_location="cpu", weights_only=True)


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise `ValueError` naming the file when its sha256 is not `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 {actual} does not match the recorded {expected}; "
            "the file is corrupt or is another file: fetch it again."
        )


def load_checkpoint(path: str | Path) -> Any | None:
    """A checkpoint's content (tensors and plain containers only), or None when it is absent or
    unreadable; an unreadable one is removed, with a warning, so it gets recomputed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_torch(path)
    except Exception as error:  # torch raises several types for a truncated or corrupt file
        warnings.warn(f"checkpoint {path} is unreadable ({type(error).__name__}); it will be recomputed", stacklevel=2)
        path.unlink()
        return None
