"""Datasets as in-memory uint8 arrays, and a fast loader that augments whole batches.

Sources of CIFAR-10, in the order they are looked for under the data root:

1. ``cifar10-jpeg.tar.gz`` (or ``cifar10/cifar10-jpeg.tar.gz``): the complete CIFAR-10 stored
   as JPEG (exact labels and order, lossy pixels at about 30.5 dB PSNR); verified by sha256,
   decoded once with Pillow and cached as uint8 arrays outside the data folder.
2. ``cifar-10-batches-py``: torchvision's folder of the original pickles.
3. With ``download=True``: torchvision downloads the originals (needs internet).

``cifar10-sample`` is a class-balanced cut of the JPEG copy that ships inside the package
(500 train + 100 test images per class); see ``tkdlib/assets/README.md``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tkdlib.io import atomic_write, verify_sha256

DATA_ROOT_ENV = "TKD_DATA"
CACHE_ENV = "TKD_CACHE"
SPLITS = ("train", "test")

CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR10_JPEG_SHA256 = "84e8266a3fe1275f67a76b903144f2076b821bef777ab9eba54d140b79f7e115"
SAMPLE_ARCHIVE = Path(__file__).parent / "assets" / "cifar10-sample-jpeg.tar.gz"
SAMPLE_SHA256 = "94baac3de742433011454569bcbc4602fe13a7ea4f59810894ed3b4b6ccb0d95"

# Per-channel mean and std of pixels / 255 on the training split.
CHANNEL_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
DATASET_NAMES = ("cifar10", "cifar10-sample")

_MEMBER = re.compile(r"^[^/]+/(train|test)/([^/]+)/(\d+)\.jpg$")


@dataclass(frozen=True)
class ImageArrays:
    """One split of an image dataset held in memory.

    images: uint8 array (N, H, W, 3); labels: int64 array (N,) in [0, len(classes));
    source: which copy of the data this is (file name and sha256, or folder), for run records.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {self.labels.shape}")
        if len(self.labels) and not (0 <= self.labels.min() and self.labels.max() < len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}), got [{self.labels.min()}, {self.labels.max()}]")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$TKD_CACHE``, else ``~/.cache/tkd``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tkd")


def resolve_data_root(root: str | Path | None, create: bool = False) -> Path:
    """The data root: the argument, else ``$TKD_DATA``; a clear error when neither is set.
    With `create` (for downloads) a missing folder is made instead of being an error."""
    chosen = root if root not in (None, "") else os.environ.get(DATA_ROOT_ENV)
    if not chosen:
        raise FileNotFoundError(
            "No data root given: pass data_root=... or set TKD_DATA to a folder holding "
            f"{CIFAR10_JPEG_ARCHIVE} or cifar-10-batches-py (with internet, pass download=True), "
            "or use the bundled dataset 'cifar10-sample'."
        )
    path = Path(chosen).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise FileNotFoundError(f"Data root {path} does not exist or is not a folder.")
    return path


def load_dataset(name: str, split: str, root: str | Path | None = None, download: bool = False) -> ImageArrays:
    """Load one split (``"train"`` or ``"test"``) of dataset `name` as uint8 arrays."""
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if name == "cifar10-sample":
        return read_jpeg_archive(SAMPLE_ARCHIVE, SAMPLE_SHA256)[split]
    return _load_cifar10(split, resolve_data_root(root, create=download), download)


def _load_cifar10(split: str, root: Path, download: bool) -> ImageArrays:
    for candidate in (root / CIFAR10_JPEG_ARCHIVE, root / "cifar10" / CIFAR10_JPEG_ARCHIVE):
        if candidate.is_file():
            return read_jpeg_archive(candidate, CIFAR10_JPEG_SHA256)[split]
    if download or (root / "cifar-10-batches-py").is_dir():
        from torchvision.datasets import CIFAR10

        dataset = CIFAR10(str(root), train=split == "train", download=download)
        return ImageArrays(
            images=np.asarray(dataset.data, dtype=np.uint8),
            labels=np.asarray(dataset.targets, dtype=np.int64),
            classes=tuple(dataset.classes),
            source=f"torchvision CIFAR10 pickles in {root / 'cifar-10-batches-py'}",
        )
    raise FileNotFoundError(
        f"No CIFAR-10 under {root}: expected {CIFAR10_JPEG_ARCHIVE} (or cifar10/{CIFAR10_JPEG_ARCHIVE}) "
        "or cifar-10-batches-py; with internet, pass download=True."
    )


def read_jpeg_archive(archive: str | Path, sha256: str) -> dict[str, ImageArrays]:
    """Both splits of a ``cifar10-jpeg`` image-folder archive, in the original order.

    The archive is verified against `sha256` and decoded once; the decoded arrays are cached
    in `cache_dir()` under the archive's sha256, so later calls load in well under a second.
    """
    archive = Path(archive)
    cached = cache_dir() / f"{sha256}.npz"
    if not cached.is_file():
        verify_sha256(archive, sha256)
        arrays = _decode_jpeg_archive(archive)
        with atomic_write(cached, "wb") as handle:
            np.savez(handle, **arrays)
    with np.load(cached) as stored:
        classes = tuple(str(c) for c in stored["classes"])
        source = f"{archive.name} (JPEG re-encoding of CIFAR-10, sha256 {sha256[:12]})"
        return {
            split: ImageArrays(stored[f"{split}_images"], stored[f"{split}_labels"], classes, source)
            for split in SPLITS
        }


def _decode_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode every ``<split>/<class>/<index>.jpg`` member; sort each split by index."""
    found: dict[str, list[tuple[int, str, np.ndarray]]] = {split: [] for split in SPLITS}
    classes: list[str] | None = None
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            if member.name.endswith("/classes.txt"):
                classes = tar.extractfile(member).read().decode().split()
                continue
            match = _MEMBER.match(member.name)
            if match is None:
                continue
            split, class_name, index = match.group(1), match.group(2), int(match.group(3))
            with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                found[split].append((index, class_name, np.asarray(image.convert("RGB"), dtype=np.uint8)))
    if classes is None:
        raise ValueError(f"{archive}: no classes.txt inside; is this a cifar10-jpeg archive?")
    class_index = {name: i for i, name in enumerate(classes)}
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, items in found.items():
        items.sort(key=lambda item: item[0])
        arrays[f"{split}_images"] = np.stack([pixels for _, _, pixels in items])
        arrays[f"{split}_labels"] = np.array([class_index[name] for _, name, _ in items], dtype=np.int64)
    return arrays


def write_class_balanced_sample(
    archive: str | Path, out: str | Path, train_per_class: int, test_per_class: int
) -> None:
    """Copy the first `train_per_class` / `test_per_class` images of each class (original order)
    from a ``cifar10-jpeg`` archive into a new archive of the same layout; JPEG bytes unchanged."""
    quota = {"train": train_per_class, "test": test_per_class}
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(archive) as source, atomic_write(out, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w:gz") as target:
            for member in source:
                match = _MEMBER.match(member.name)
                is_classes = member.name.endswith("/classes.txt")
                if match:
                    key = (match.group(1), match.group(2))
                    if taken.get(key, 0) >= quota[key[0]]:
                        continue
                    taken[key] = taken.get(key, 0) + 1
                if match or is_classes:
                    target.addfile(member, source.extractfile(member))


class TensorLoader:
    """Batches from in-memory images, augmented and normalized on whole batches.

    Yields ``(x, y)``: x float32 (B, 3, H, W) in channels_last memory format, normalized with the
    dataset's mean/std; y int64 (B,). With ``train=True`` the order is shuffled and each batch gets
    a random crop from the image padded by `pad` pixels (zeros) and a random horizontal flip; the
    last partial batch is dropped. Deterministic: epoch e draws from a generator seeded with
    (seed, e), so the same seed gives the same batches.
    """

    def __init__(
        self,
        data: ImageArrays,
        batch_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        train: bool,
        seed: int = 0,
        pad: int = 4,
        device: str | torch.device = "cpu",
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.images = torch.from_numpy(data.images).to(self.device).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self.train = train
        self.seed = seed
        self.pad = pad
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size].to(self.device)
            images = self.images[index]
            if self.train:
                images = self._augment(images, generator)
            x = (images.float() - self.mean) / self.std
            yield x.contiguous(memory_format=torch.channels_last), self.labels[index]

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(images, self.pad, generator)


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of the image zero-padded by `pad` pixels, then a random
    horizontal flip. (B, C, H, W) in and out, any dtype and device; `generator` lives on the CPU."""
    batch, _, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    top = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(device)
    left = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(device)
    rows = (top[:, None] + torch.arange(height, device=device))[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, :]  # (B, 1, W)
    batch_index = torch.arange(batch, device=device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(device)
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)
