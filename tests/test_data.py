from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tkdlib import data
from tkdlib.data import ImageArrays, TensorLoader, load_dataset
from tkdlib.io import sha256_of

MEAN, STD = data.CHANNEL_STATS["cifar10"]


def test_bundled_sample_is_class_balanced_cifar10_in_original_order():
    train, test = load_dataset("cifar10-sample", "train"), load_dataset("cifar10-sample", "test")
    assert train.images.shape == (5000, 32, 32, 3) and test.images.shape == (1000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [500] * 10 and np.bincount(test.labels).tolist() == [100] * 10
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # CIFAR-10's first training labels
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert train.classes[0] == "airplane" and "JPEG" in train.source
    assert sha256_of(data.SAMPLE_ARCHIVE) == data.SAMPLE_SHA256


def test_corrupt_archive_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TKD_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / data.CIFAR10_JPEG_ARCHIVE
    bad.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="sha256.*fetch it again"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_missing_or_empty_root_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="TKD_DATA"):
        load_dataset("cifar10", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("cifar10", "train", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="Unknown split"):
        load_dataset("cifar10-sample", "val")


def test_torchvision_pickle_folder_is_read(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [f"c{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    with pytest.MonkeyPatch.context() as patch:  # files written here cannot match torchvision's md5s
        patch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
        arrays = load_dataset("cifar10", "test", root=tmp_path)
    assert arrays.images.shape == (4, 32, 32, 3) and arrays.labels.tolist() == [0, 1, 2, 9]


def test_image_arrays_validate_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        ImageArrays(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 5]), ("a", "b"), "test")


def small_arrays(n: int = 10) -> ImageArrays:
    images = np.arange(n * 8 * 8 * 3, dtype=np.int64).reshape(n, 8, 8, 3) % 251
    return ImageArrays(images.astype(np.uint8), np.arange(n) % 3, ("a", "b", "c"), "test")


def test_tensor_loader_shapes_normalization_and_order():
    arrays = small_arrays()
    loader = TensorLoader(arrays, 4, MEAN, STD, train=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3 and batches[-1][0].shape == (2, 3, 8, 8)
    x, y = batches[0]
    assert x.is_contiguous(memory_format=torch.channels_last)
    expected = (torch.from_numpy(arrays.images[:4]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [0, 1, 2, 0]


def test_augmentation_is_a_crop_of_the_padded_image_or_its_mirror():
    arrays = small_arrays(6)
    loader = TensorLoader(arrays, 6, (0.0, 0.0, 0.0), (1 / 255,) * 3, train=True, seed=3, pad=2)
    x, y = next(iter(loader))
    originals = torch.from_numpy(arrays.images).permute(0, 3, 1, 2).float()
    for image, label in zip(x, y):
        padded_candidates = [torch.nn.functional.pad(o, (2, 2, 2, 2)) for o, lab in zip(originals, arrays.labels) if lab == label]
        found = any(
            torch.equal(image, candidate[:, top : top + 8, left : left + 8]) or torch.equal(image.flip(2), candidate[:, top : top + 8, left : left + 8])
            for candidate in padded_candidates
            for top in range(5)
            for left in range(5)
        )
        assert found


def test_tensor_loader_is_deterministic_given_seed():
    arrays = small_arrays(12)
    first = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=7)]
    second = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=7)]
    other = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=8)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
