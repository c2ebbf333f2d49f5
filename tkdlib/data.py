"""Datasets as in-memory uint8 arrays (`tkdlib.loaders` batches and augments them).

`load_dataset(name, split, root)` is the one entry point; splits are ``"train"`` and ``"test"``.
What each name is read from, under the data root (the `root` argument, else ``$TKD_DATA``):

- ``cifar10``: 1. ``cifar10-jpeg.tar.gz`` (or ``cifar10/cifar10-jpeg.tar.gz``), the complete
  CIFAR-10 stored as JPEG (exact labels and order, lossy pixels at about 30.5 dB PSNR);
  2. ``cifar-10-batches-py``, torchvision's folder of the original pickles; 3. with
  ``download=True``, torchvision downloads the originals (needs internet).
- ``cifar100``: ``cifar-100-python``, torchvision's folder of the original pickles, or with
  ``download=True`` torchvision downloads it. This workplace has no copy.
- ``tinyimagenet``: TinyImageNet-200, the five archives of this workplace's copy or an extracted
  ``tiny-imagenet-200/`` folder (see `tkdlib.tinyimagenet`); ``test`` is its labelled ``val``
  split, since the official test split has no labels.
- ``cifar10-sample``: a class-balanced cut of the JPEG copy that ships inside the package
  (500 train + 100 test images per class); see ``tkdlib/assets/README.md``.

Every file with a recorded checksum is sha256-verified before it is first decoded (a mismatch
names the file); torchvision checks its own pickles by md5. Archives and JPEG folders are decoded
once (Pillow) and cached as uint8 arrays in `cache_dir()`, keyed by the archives' sha256.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tkdlib import tinyimagenet
from tkdlib.imagefiles import archive_files, decode_image, stack_images
from tkdlib.io import atomic_write, verify_sha256

DATA_ROOT_ENV = "TKD_DATA"
CACHE_ENV = "TKD_CACHE"
SPLITS = ("train", "test")
WORKPLACE_DATA = "../shared/data"  # where this workplace keeps its copies, beside the repository

CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR10_JPEG_SHA256 = "84e8266a3fe1275f67a76b903144f2076b821bef777ab9eba54d140b79f7e115"
SAMPLE_ARCHIVE = Path(__file__).parent / "assets" / "cifar10-sample-jpeg.tar.gz"
SAMPLE_SHA256 = "94baac3de742433011454569bcbc4602fe13a7ea4f59810894ed3b4b6ccb0d95"

Triple = tuple[float, float, float]

# Per-channel mean and std of pixels / 255 on the training split (std over all pixels of the split).
CHANNEL_STATS: dict[str, tuple[Triple, Triple]] = {
    # Published values for the original CIFAR-10 (the JPEG copy here measures 0.4913, 0.4821, 0.4465 /
    # 0.2452, 0.2428, 0.2606: see ../shared/data/cifar10/README.md).
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # The commonly published values for the original CIFAR-100 train set; not measured here (no copy).
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Measured with scripts/check_data.py (`channel_stats`) on the 100,000 train images of this
    # workplace's copy (the dataset's own JPEGs, decoded by Pillow 13.0.0, greyscale converted to RGB);
    # the commonly published 0.4802, 0.4481, 0.3975 / 0.2770, 0.2691, 0.2821 agree to 0.0006.
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2764, 0.2689, 0.2816)),
}


@dataclass(frozen=True)
class DatasetSpec:
    """What training needs to know about a dataset.

    image_size: height = width of its images, in pixels; mean, std: `CHANNEL_STATS` of its training
    split (pixels / 255); pad: zero padding in pixels on each side before the random training crop
    of `image_size` pixels (4 for 32×32 CIFAR; 8 for 64×64 TinyImageNet, the same eighth of a side).
    """

    image_size: int
    mean: Triple
    std: Triple
    pad: int


SPECS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(32, *CHANNEL_STATS["cifar10"], pad=4),
    "cifar100": DatasetSpec(32, *CHANNEL_STATS["cifar100"], pad=4),
    "tinyimagenet": DatasetSpec(64, *CHANNEL_STATS["tinyimagenet"], pad=8),
}
SAMPLES = {"cifar10-sample": "cifar10"}  # bundled samples → the dataset they are cut from
DATASET_NAMES = (*SPECS, *SAMPLES)

_MEMBER = re.compile(r"^[^/]+/(train|test)/([^/]+)/(\d+)\.jpg$")


def dataset_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` of dataset `name` (a sample shares that of its dataset)."""
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    return SPECS[SAMPLES.get(name, name)]


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
            "No data root given: pass root=... (data_root=... in a Config run) or set TKD_DATA to the folder "
            f"holding the datasets. In this workplace that is {WORKPLACE_DATA} beside the repository; with "
            "internet, torchvision fetches CIFAR-10/100 into any folder with download=True. "
            "The bundled 'cifar10-sample' needs no data root."
        )
    path = Path(chosen).expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise FileNotFoundError(f"Data root {path} does not exist or is not a folder (in this workplace: {WORKPLACE_DATA}).")
    return path


def load_dataset(name: str, split: str, root: str | Path | None = None, download: bool = False) -> ImageArrays:
    """One split of dataset `name` as uint8 arrays (N, H, W, 3) with int64 labels.

    name: one of `DATASET_NAMES`; split: ``"train"`` or ``"test"`` (for TinyImageNet, ``"test"`` is
    its labelled ``val`` split); root: the data root (default ``$TKD_DATA``; unused by samples);
    download: let torchvision fetch CIFAR-10/100 into `root` (needs internet).
    """
    spec = dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)} (TinyImageNet's val split is 'test').")
    if name in SAMPLES:
        arrays = read_jpeg_archive(SAMPLE_ARCHIVE, SAMPLE_SHA256)[split]
    else:
        arrays = _LOADERS[name](split, resolve_data_root(root, create=download), download)
    if arrays.images.shape[1:3] != (spec.image_size, spec.image_size):
        raise ValueError(
            f"{arrays.source}: images are {arrays.images.shape[1]}×{arrays.images.shape[2]} pixels, but {name} "
            f"images are {spec.image_size}×{spec.image_size}; is this the right data for {name}?"
        )
    return arrays


def _load_cifar10(split: str, root: Path, download: bool) -> ImageArrays:
    for candidate in (root / CIFAR10_JPEG_ARCHIVE, root / "cifar10" / CIFAR10_JPEG_ARCHIVE):
        if candidate.is_file():
            return read_jpeg_archive(candidate, CIFAR10_JPEG_SHA256)[split]
    if download or (root / "cifar-10-batches-py").is_dir():
        return _torchvision_cifar("CIFAR10", split, root, download)
    raise FileNotFoundError(
        f"No CIFAR-10 under {root}: expected {CIFAR10_JPEG_ARCHIVE} (or cifar10/{CIFAR10_JPEG_ARCHIVE}) "
        f"or cifar-10-batches-py; with internet, pass download=True (in this workplace: root={WORKPLACE_DATA})."
    )


def _load_cifar100(split: str, root: Path, download: bool) -> ImageArrays:
    if download or (root / "cifar-100-python").is_dir():
        return _torchvision_cifar("CIFAR100", split, root, download)
    raise FileNotFoundError(
        f"No CIFAR-100 under {root}: expected torchvision's cifar-100-python folder; with internet, pass "
        "download=True and torchvision fetches it. This workplace has no copy of CIFAR-100."
    )


def _torchvision_cifar(class_name: str, split: str, root: Path, download: bool) -> ImageArrays:
    """Torchvision's `CIFAR10` or `CIFAR100` (fine labels) under `root`; torchvision checks the md5s."""
    import torchvision.datasets

    dataset = getattr(torchvision.datasets, class_name)(str(root), train=split == "train", download=download)
    return ImageArrays(
        images=np.asarray(dataset.data, dtype=np.uint8),
        labels=np.asarray(dataset.targets, dtype=np.int64),
        classes=tuple(dataset.classes),
        source=f"torchvision {class_name} pickles in {root / dataset.base_folder}",
    )


def _load_tinyimagenet(split: str, root: Path, download: bool) -> ImageArrays:
    copy = tinyimagenet.find_copy(root)
    stored = _cached_arrays(copy.cache_key(split), lambda: copy.decode(split))
    return ImageArrays(stored["images"], stored["labels"], tuple(str(c) for c in stored["classes"]), copy.describe(split))


_LOADERS: dict[str, Callable[[str, Path, bool], ImageArrays]] = {
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "tinyimagenet": _load_tinyimagenet,
}


def _cached_arrays(key: str, decode: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored under `key` in `cache_dir()`; on a miss, `decode()` them and store them
    (uncompressed ``.npz``, written atomically)."""
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    arrays = decode()
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)
    return arrays


def read_jpeg_archive(archive: str | Path, sha256: str) -> dict[str, ImageArrays]:
    """Both splits of a ``cifar10-jpeg`` image-folder archive, in the original order.

    The archive is verified against `sha256` and decoded once; the decoded arrays are cached
    in `cache_dir()` under the archive's sha256, so later calls load in well under a second.
    """
    archive = Path(archive)

    def decode() -> dict[str, np.ndarray]:
        verify_sha256(archive, sha256)
        return _decode_jpeg_archive(archive)

    stored = _cached_arrays(sha256, decode)
    classes = tuple(str(c) for c in stored["classes"])
    source = f"{archive.name} (JPEG re-encoding of CIFAR-10, sha256 {sha256[:12]})"
    return {split: ImageArrays(stored[f"{split}_images"], stored[f"{split}_labels"], classes, source) for split in SPLITS}


def _decode_jpeg_archive(archive: Path) -> dict[str, np.ndarray]:
    """Decode every ``<split>/<class>/<index>.jpg`` member; sort each split by index."""
    found: dict[str, list[tuple[int, str, str, np.ndarray]]] = {split: [] for split in SPLITS}
    classes: list[str] | None = None
    for name, read in archive_files(archive):
        if name.endswith("/classes.txt"):
            classes = read().decode().split()
        elif match := _MEMBER.match(name):
            split, class_name, index = match.group(1), match.group(2), int(match.group(3))
            found[split].append((index, name, class_name, decode_image(read())))
    if classes is None:
        raise ValueError(f"{archive}: no classes.txt inside; is this a cifar10-jpeg archive?")
    class_index = {name: i for i, name in enumerate(classes)}
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, items in found.items():
        items.sort(key=lambda item: item[0])
        arrays[f"{split}_images"] = stack_images([pixels for *_, pixels in items], [name for _, name, _, _ in items])
        arrays[f"{split}_labels"] = np.array([class_index[class_name] for _, _, class_name, _ in items], dtype=np.int64)
    return arrays


def channel_stats(images: np.ndarray, chunk: int = 2048) -> tuple[Triple, Triple]:
    """Per-channel mean and population std of pixels / 255 over uint8 images (N, H, W, 3),
    summed in float64 over chunks of `chunk` images (memory stays small for 100,000 images)."""
    sums = np.zeros(3)
    squares = np.zeros(3)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].reshape(-1, 3).astype(np.float64) / 255
        sums += block.sum(axis=0)
        squares += np.square(block).sum(axis=0)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


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
