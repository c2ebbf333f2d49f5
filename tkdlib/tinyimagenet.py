"""TinyImageNet-200 from its standard layout: an extracted ``tiny-imagenet-200/`` folder, or the
five archives of this workplace's copy, read in place.

Layout (as distributed, and as the archives hold it under ``tiny-imagenet-200/``)::

    wnids.txt                               the WordNet ids of the classes, one per line
    train/<wnid>/images/<wnid>_<i>.JPEG     training images
    val/images/val_<i>.JPEG                 labelled validation images
    val/val_annotations.txt                 file <TAB> wnid <TAB> bounding box

Class index = position of the wnid in ``sorted(wnids)``. Training images are ordered by
(class, i), validation images by i. Images are 64×64 JPEG; greyscale ones are converted to RGB.
The official ``test/`` split has no labels, so the project's ``test`` split is ``val``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tkdlib.imagefiles import FileListing, archive_files, decode_image, stack_images
from tkdlib.io import verify_sha256

FOLDER = "tiny-imagenet-200"
VAL_ARCHIVE = "tinyimagenet-200-val.tar.gz"  # wnids.txt, words.txt and val/
TRAIN_ARCHIVES = tuple(f"tinyimagenet-200-train-{i}.tar.gz" for i in range(4))  # train/, 50 classes each
ARCHIVE_SHA256 = {
    VAL_ARCHIVE: "519407048f7e9d563052c65b2fd96564b2a263e7bb9a8485f7fe1d2add022698",
    TRAIN_ARCHIVES[0]: "3a7e03a407999da97296e40d45a379dd5e0ba1493a51e285b01cf78adca9b24f",
    TRAIN_ARCHIVES[1]: "37c9c2304782e5009869d82bc62df49325379ff394c09580f59e97c9dd31d998",
    TRAIN_ARCHIVES[2]: "ce453c64df59df62eb0e34cac9089d3900818fcdffbbedcba737e03c3f5a5b88",
    TRAIN_ARCHIVES[3]: "d042dbc50c49c41ade1a0764ca25038526cbd666f81f47dc9d295a8e25b8fced",
}
SPLIT_FOLDERS = {"train": "train", "test": "val"}
DOWNLOAD_HINT = (
    "TinyImageNet is not in torchvision: download http://cs231n.stanford.edu/tiny-imagenet-200.zip and "
    f"extract it into the data root (giving {FOLDER}/), or, in this workplace, use the data root ../shared/data "
    "(it holds the archives under tinyimagenet/)."
)

_WNIDS = re.compile(r"(?:^|/)wnids\.txt$")
_ANNOTATIONS = re.compile(r"(?:^|/)val/val_annotations\.txt$")
_IMAGE = {
    "train": re.compile(r"(?:^|/)train/(n\d+)/images/\1_(\d+)\.JPEG$"),
    "test": re.compile(r"(?:^|/)val/images/(val_(\d+)\.JPEG)$"),
}


@dataclass(frozen=True)
class TinyImageNetCopy:
    """One copy found under a data root: the five archives (`archived`), or an extracted folder.

    paths: the archives in the order ``VAL_ARCHIVE, *TRAIN_ARCHIVES``, or the one folder.
    """

    paths: tuple[Path, ...]
    archived: bool

    def _used(self, split: str) -> tuple[Path, ...]:
        """The archives a split is read from: val always (it holds wnids.txt), train archives for train."""
        return self.paths if split == "train" else self.paths[:1]

    def cache_key(self, split: str) -> str:
        """A file-name-safe key for the decoded split: from the recorded sha256 of the archives used,
        or, for a folder, from the names, sizes and modification times of its files."""
        if self.archived:
            identity = "\n".join(ARCHIVE_SHA256[path.name] for path in self._used(split))
        else:
            stats = ((name, path.stat()) for name, path in self._folder_paths(split))
            identity = "\n".join(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}" for name, stat in stats)
        return f"tinyimagenet-{split}-{'archives' if self.archived else 'folder'}-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"

    def describe(self, split: str) -> str:
        """Which copy and split this is, for run records."""
        what = f"TinyImageNet-200 {SPLIT_FOLDERS[split]} split"
        if self.archived:
            return f"{what} from " + ", ".join(f"{p.name} (sha256 {ARCHIVE_SHA256[p.name][:12]})" for p in self._used(split))
        return f"{what} from the folder {self.paths[0]}"

    def decode(self, split: str) -> dict[str, np.ndarray]:
        """Decode one split: ``images`` uint8 (N, 64, 64, 3), ``labels`` int64 (N,), ``classes`` (C,) wnids.
        Archives are verified against their recorded sha256 first (a mismatch names the file)."""
        if self.archived:
            for archive in self._used(split):
                verify_sha256(archive, ARCHIVE_SHA256[archive.name])
            files = itertools.chain.from_iterable(archive_files(archive) for archive in self._used(split))
        else:
            files = ((name, path.read_bytes) for name, path in self._folder_paths(split))
        return read_split(files, split, where=", ".join(str(p) for p in self._used(split)))

    def _folder_paths(self, split: str) -> list[tuple[str, Path]]:
        """``wnids.txt`` and every file below the split's folder, as (relative name, path)."""
        folder = self.paths[0]
        below = sorted(path for path in (folder / SPLIT_FOLDERS[split]).rglob("*") if path.is_file())
        return [("wnids.txt", folder / "wnids.txt"), *((path.relative_to(folder).as_posix(), path) for path in below)]


def find_copy(root: Path) -> TinyImageNetCopy:
    """The copy under `root`: the archives in `root` or ``root/tinyimagenet``, else a ``tiny-imagenet-200``
    folder there. A FileNotFoundError says what is missing and how to get the data."""
    names = (VAL_ARCHIVE, *TRAIN_ARCHIVES)
    for folder in (root, root / "tinyimagenet"):
        archives = tuple(folder / name for name in names)
        present = [path.is_file() for path in archives]
        if all(present):
            return TinyImageNetCopy(archives, archived=True)
        if any(present):
            missing = ", ".join(path.name for path, there in zip(archives, present) if not there)
            raise FileNotFoundError(f"TinyImageNet archives in {folder} are incomplete: missing {missing}.")
    for folder in (root / FOLDER, root / "tinyimagenet" / FOLDER):
        if (folder / "wnids.txt").is_file():
            return TinyImageNetCopy((folder,), archived=False)
    raise FileNotFoundError(
        f"No TinyImageNet-200 under {root}: expected the archives {', '.join(names)} (in the root or its "
        f"tinyimagenet/ folder) or an extracted {FOLDER}/ folder with wnids.txt. {DOWNLOAD_HINT}"
    )


def read_split(files: FileListing, split: str, where: str) -> dict[str, np.ndarray]:
    """Decode the images of `split` (``train`` or ``test`` = val) found in a file listing of the
    standard layout; `where` names the source in errors. Returns ``images``, ``labels``, ``classes``."""
    wnids: list[str] | None = None
    annotations: dict[str, str] = {}
    found: list[tuple[int, str, str, np.ndarray]] = []  # (index i, file name, wnid or val file, pixels)
    for name, read in files:
        if _WNIDS.search(name):
            wnids = read().decode().split()
        elif split == "test" and _ANNOTATIONS.search(name):
            annotations = dict(line.split("\t")[:2] for line in read().decode().splitlines() if line.strip())
        elif match := _IMAGE[split].search(name):
            found.append((int(match.group(2)), name, match.group(1), decode_image(read())))
    if wnids is None:
        raise ValueError(f"{where}: no wnids.txt; is this TinyImageNet-200 in its standard layout?")
    if len(set(wnids)) != len(wnids):
        raise ValueError(f"{where}: wnids.txt lists a class twice.")
    if not found:
        raise ValueError(f"{where}: no {SPLIT_FOLDERS[split]} images in the standard layout ({_IMAGE[split].pattern}).")
    if split == "test":
        found = [(i, name, _val_wnid(annotations, key, name, where), pixels) for i, name, key, pixels in found]
        unmatched = set(annotations) - {name.rsplit("/", 1)[-1] for _, name, _, _ in found}
        if unmatched:
            raise ValueError(f"{where}: val_annotations.txt lists {len(unmatched)} images that are missing, e.g. {min(unmatched)}.")
    classes = sorted(wnids)
    class_index = {wnid: c for c, wnid in enumerate(classes)}
    for _, name, wnid, _ in found:
        if wnid not in class_index:
            raise ValueError(f"{where}: {name} has class {wnid}, which wnids.txt does not list.")
    found.sort(key=lambda item: (class_index[item[2]], item[0]) if split == "train" else item[0])
    return {
        "images": stack_images([pixels for *_, pixels in found], [name for _, name, _, _ in found]),
        "labels": np.array([class_index[wnid] for _, _, wnid, _ in found], dtype=np.int64),
        "classes": np.array(classes),
    }


def _val_wnid(annotations: dict[str, str], file: str, name: str, where: str) -> str:
    """The wnid that val_annotations.txt gives `file`; a ValueError when it gives none."""
    if file not in annotations:
        raise ValueError(f"{where}: {name} is not in val/val_annotations.txt (or that file is missing).")
    return annotations[file]
