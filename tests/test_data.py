from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tkdlib import data, loaders, tinyimagenet
from tkdlib.data import ImageArrays, load_dataset
from tkdlib.io import sha256_of
from tkdlib.loaders import TensorLoader

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
    with pytest.raises(FileNotFoundError, match="TKD_DATA.*shared/data.*download=True"):
        load_dataset("cifar10", "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("cifar10", "train", root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="Unknown split.*'test'"):
        load_dataset("cifar10-sample", "val")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.dataset_spec("imagenet")


def test_dataset_specs_give_normalization_and_crop_padding():
    assert data.dataset_spec("cifar10-sample") == data.dataset_spec("cifar10")
    assert (data.dataset_spec("cifar10").image_size, data.dataset_spec("cifar10").pad) == (32, 4)
    assert (data.dataset_spec("tinyimagenet").image_size, data.dataset_spec("tinyimagenet").pad) == (64, 8)
    for name, (mean, std) in data.CHANNEL_STATS.items():
        assert (data.SPECS[name].mean, data.SPECS[name].std) == (mean, std)
        assert all(0 < value < 1 for value in (*mean, *std))
    assert set(data.CHANNEL_STATS) == set(data.SPECS)


def test_channel_stats_are_those_of_all_pixels():
    images = np.random.default_rng(2).integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    mean, std = data.channel_stats(images, chunk=3)
    pixels = images.reshape(-1, 3) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=0))
    np.testing.assert_allclose(std, pixels.std(axis=0))


def write_cifar_pickles(folder, files, label_key, meta_file, meta_key, classes, rng):
    """A torchvision-format CIFAR folder (str keys): each of `files` holds 4 random images; returns
    the pixels written to each file as (n, 3072) uint8."""
    folder.mkdir()
    written = {}
    for name in files:
        written[name] = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batch = {"data": written[name], label_key: [0, 1, 2, len(classes) - 1]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / meta_file).write_bytes(pickle.dumps({meta_key: classes}))
    return written


@pytest.fixture
def no_torchvision_md5(monkeypatch):
    """Files written by the tests cannot match torchvision's md5s."""
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)


def test_torchvision_pickle_folder_is_read(tmp_path, no_torchvision_md5):
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    names = [f"c{i}" for i in range(10)]
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", files, "labels", "batches.meta", "label_names", names, np.random.default_rng(0))
    arrays = load_dataset("cifar10", "test", root=tmp_path)
    assert arrays.images.shape == (4, 32, 32, 3) and arrays.labels.tolist() == [0, 1, 2, 9]


def test_cifar100_pickle_folder_is_read_with_fine_labels(tmp_path, no_torchvision_md5):
    names = [f"fine{i}" for i in range(100)]
    written = write_cifar_pickles(tmp_path / "cifar-100-python", ["train", "test"], "fine_labels", "meta", "fine_label_names", names, np.random.default_rng(1))
    train = load_dataset("cifar100", "train", root=tmp_path)
    assert train.images.shape == (4, 32, 32, 3) and train.labels.tolist() == [0, 1, 2, 99]
    assert train.num_classes == 100 and train.classes[99] == "fine99" and "CIFAR100" in train.source
    np.testing.assert_array_equal(train.images[1], written["train"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert np.array_equal(load_dataset("cifar100", "test", root=tmp_path).images[0], written["test"][0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_missing_cifar100_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*download=True"):
        load_dataset("cifar100", "train", root=tmp_path)


def test_image_arrays_validate_labels_and_shapes():
    with pytest.raises(ValueError, match="labels must lie"):
        ImageArrays(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 5]), ("a", "b"), "test")
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        ImageArrays(np.zeros((2, 3, 4, 4), np.uint8), np.array([0, 1]), ("a", "b"), "test")
    with pytest.raises(ValueError, match="labels must have shape"):
        ImageArrays(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1, 1]), ("a", "b"), "test")


def small_arrays(n: int = 10, size: int = 8) -> ImageArrays:
    images = np.arange(n * size * size * 3, dtype=np.int64).reshape(n, size, size, 3) % 251
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


@pytest.mark.parametrize(("size", "pad"), [(8, 2), (64, 8)])
def test_augmentation_is_a_crop_of_the_padded_image_or_its_mirror(size, pad):
    arrays = small_arrays(6, size)
    loader = TensorLoader(arrays, 6, (0.0, 0.0, 0.0), (1 / 255,) * 3, train=True, seed=3, pad=pad)
    x, y = next(iter(loader))
    assert x.shape == (6, 3, size, size) and x.is_contiguous(memory_format=torch.channels_last)
    originals = torch.from_numpy(arrays.images).permute(0, 3, 1, 2).float()
    crops = []
    for image, label in zip(x, y):
        padded_candidates = [torch.nn.functional.pad(o, (pad,) * 4) for o, lab in zip(originals, arrays.labels) if lab == label]
        found = [
            (top, left, torch.equal(image.flip(2), crop))
            for candidate in padded_candidates
            for top in range(2 * pad + 1)
            for left in range(2 * pad + 1)
            if torch.equal(image, crop := candidate[:, top : top + size, left : left + size]) or torch.equal(image.flip(2), crop)
        ]
        assert found
        crops.append(found[0])
    assert len(set(crops)) > 1  # offsets and flips vary within the batch


def test_tensor_loader_is_deterministic_given_seed():
    arrays = small_arrays(12)
    first = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=7)]
    second = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=7)]
    other = [x for x, _ in TensorLoader(arrays, 4, MEAN, STD, train=True, seed=8)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_tensor_loader_rejects_bad_settings():
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(small_arrays(), 0, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="pad"):
        TensorLoader(small_arrays(), 4, MEAN, STD, train=True, pad=-1)


def test_torchvision_loader_matches_tensor_loader_without_augmentation():
    arrays, spec = small_arrays(10, 32), data.dataset_spec("cifar10")
    reference = list(TensorLoader(arrays, 4, spec.mean, spec.std, train=False))
    pipeline = list(loaders.torchvision_loader(arrays, 4, spec, train=False, workers=0))
    assert len(reference) == len(pipeline) == 3
    for (x, y), (x_pil, y_pil) in zip(reference, pipeline):
        torch.testing.assert_close(x_pil, x, rtol=0, atol=1e-5)
        assert torch.equal(y, y_pil)
    augmented = list(loaders.torchvision_loader(arrays, 4, spec, train=True, workers=0))
    assert len(augmented) == 2 and augmented[0][0].shape == (4, 3, 32, 32)


# TinyImageNet: a small tree of real JPEGs in the standard layout, written here with Pillow.
WNIDS = ("n03000000", "n01000000", "n02000000")  # wnids.txt order; classes are sorted: n01, n02, n03
GREY = ("n02000000", 1)  # this training image is greyscale


def colour(wnid: str, index: int) -> tuple[int, int, int]:
    """The flat colour of one test image (flat colours survive JPEG almost exactly)."""
    c = int(wnid[1:3])
    return (40 * c + 10 * index, 200 - 50 * c, 30 + 20 * index)


def write_jpeg(path, rgb, size=64, grey=False):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", (size, size), rgb[0]) if grey else Image.new("RGB", (size, size), rgb)
    image.save(path, format="JPEG", quality=95)


VAL = (("val_0.JPEG", "n03000000"), ("val_1.JPEG", "n01000000"), ("val_2.JPEG", "n02000000"), ("val_3.JPEG", "n01000000"))


def write_tiny_imagenet(root, size=64):
    """``root/tiny-imagenet-200`` with 2 training images per class and 4 val images."""
    folder = root / tinyimagenet.FOLDER
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    for wnid in WNIDS:
        (folder / "train" / wnid).mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(2):
            write_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour(wnid, i), size, grey=(wnid, i) == GREY)
    lines = []
    for i, (file, wnid) in enumerate(VAL):
        write_jpeg(folder / "val" / "images" / file, colour(wnid, 5 + i), size)
        lines.append(f"{file}\t{wnid}\t0\t0\t10\t10")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_archives(folder, out, monkeypatch):
    """The five archives of this workplace's copy, made from `folder`, their sha256 recorded."""
    import tarfile

    out.mkdir()
    train_classes = {name: [] for name in tinyimagenet.TRAIN_ARCHIVES}
    for i, wnid in enumerate(sorted(WNIDS)):
        train_classes[tinyimagenet.TRAIN_ARCHIVES[i]].append(f"train/{wnid}")
    contents = {tinyimagenet.VAL_ARCHIVE: ["wnids.txt", "words.txt", "val"], **train_classes}
    for name, members in contents.items():
        with tarfile.open(out / name, "w:gz") as tar:
            for member in members:
                tar.add(folder / member, arcname=f"{tinyimagenet.FOLDER}/{member}")
        monkeypatch.setitem(tinyimagenet.ARCHIVE_SHA256, name, sha256_of(out / name))
    return out


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TKD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tinyimagenet_folder_gives_sorted_classes_rgb_and_val_as_test(tmp_path, fresh_cache):
    write_tiny_imagenet(tmp_path)
    train, test = load_dataset("tinyimagenet", "train", tmp_path), load_dataset("tinyimagenet", "test", tmp_path)
    assert train.classes == tuple(sorted(WNIDS)) == test.classes
    assert train.images.shape == (6, 64, 64, 3) and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    expected = [colour(wnid, i) for wnid in sorted(WNIDS) for i in range(2)]
    for pixels, rgb, (wnid, i) in zip(train.images, expected, [(w, i) for w in sorted(WNIDS) for i in range(2)]):
        want = (rgb[0],) * 3 if (wnid, i) == GREY else rgb
        assert np.abs(pixels.reshape(-1, 3).mean(axis=0) - want).max() < 3
    grey = train.images[3]  # sorted order: n01_0, n01_1, n02_0, n02_1 (= GREY), ...
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    assert test.labels.tolist() == [sorted(WNIDS).index(wnid) for _, wnid in VAL]
    assert "val split" in test.source and "train split" in train.source


def test_tinyimagenet_archives_match_the_folder_and_are_decoded_once(tmp_path, fresh_cache, monkeypatch):
    folder = write_tiny_imagenet(tmp_path / "extracted")
    archives = write_archives(folder, tmp_path / "tinyimagenet", monkeypatch)
    for split in data.SPLITS:
        from_folder = load_dataset("tinyimagenet", split, tmp_path / "extracted")
        from_archives = load_dataset("tinyimagenet", split, tmp_path)  # finds root/tinyimagenet/*.tar.gz
        assert np.array_equal(from_folder.images, from_archives.images)
        assert np.array_equal(from_folder.labels, from_archives.labels) and from_folder.classes == from_archives.classes
        assert tinyimagenet.VAL_ARCHIVE in from_archives.source
    monkeypatch.setattr(tinyimagenet, "decode_image", lambda data: pytest.fail("decoded again instead of read from the cache"))
    assert np.array_equal(load_dataset("tinyimagenet", "test", tmp_path).images, from_archives.images)
    assert len(list(fresh_cache.glob("tinyimagenet-*.npz"))) == 4  # two splits, two copies
    (archives / tinyimagenet.TRAIN_ARCHIVES[0]).unlink()
    with pytest.raises(FileNotFoundError, match=f"incomplete: missing {tinyimagenet.TRAIN_ARCHIVES[0]}"):
        load_dataset("tinyimagenet", "train", tmp_path)


def test_tinyimagenet_corrupt_archive_is_named(tmp_path, fresh_cache, monkeypatch):
    archives = write_archives(write_tiny_imagenet(tmp_path / "extracted"), tmp_path / "tinyimagenet", monkeypatch)
    corrupt = archives / tinyimagenet.TRAIN_ARCHIVES[1]
    corrupt.write_bytes(corrupt.read_bytes() + b"tampered")
    assert load_dataset("tinyimagenet", "test", tmp_path).images.shape == (4, 64, 64, 3)  # test does not read it
    with pytest.raises(ValueError, match=f"{tinyimagenet.TRAIN_ARCHIVES[1]}: sha256"):
        load_dataset("tinyimagenet", "train", tmp_path)


def test_tinyimagenet_bad_layouts_are_named(tmp_path, fresh_cache):
    folder = write_tiny_imagenet(tmp_path)
    odd = folder / "train" / "n01000000" / "images" / "n01000000_1.JPEG"
    write_jpeg(odd, (0, 0, 0), size=48)
    with pytest.raises(ValueError, match=r"n01000000_1.JPEG: image of shape \(48, 48, 3\)"):
        load_dataset("tinyimagenet", "train", tmp_path)
    write_jpeg(odd, (0, 0, 0))
    write_jpeg(folder / "train" / "n09000000" / "images" / "n09000000_0.JPEG", (0, 0, 0))
    with pytest.raises(ValueError, match="n09000000_0.JPEG has class n09000000, which wnids.txt does not list"):
        load_dataset("tinyimagenet", "train", tmp_path)
    write_jpeg(folder / "val" / "images" / "val_7.JPEG", (0, 0, 0))
    with pytest.raises(ValueError, match="val_7.JPEG is not in val/val_annotations.txt"):
        load_dataset("tinyimagenet", "test", tmp_path)
    (folder / "val" / "images" / "val_7.JPEG").unlink()
    (folder / "val" / "images" / "val_3.JPEG").unlink()
    with pytest.raises(ValueError, match="lists 1 images that are missing, e.g. val_3.JPEG"):
        load_dataset("tinyimagenet", "test", tmp_path)


def test_tinyimagenet_of_the_wrong_size_or_missing_says_so(tmp_path, fresh_cache):
    with pytest.raises(FileNotFoundError, match="No TinyImageNet-200.*tiny-imagenet-200.zip.*shared/data"):
        load_dataset("tinyimagenet", "train", tmp_path)
    write_tiny_imagenet(tmp_path, size=32)
    with pytest.raises(ValueError, match="32×32 pixels, but tinyimagenet images are 64×64"):
        load_dataset("tinyimagenet", "test", tmp_path)


def test_loader_rate_counts_the_timed_images_only(monkeypatch):
    from tkdlib import throughput

    clock = iter(range(100))  # every reading of the clock is one second later
    monkeypatch.setattr(throughput, "perf_counter", lambda: next(clock))
    batches = [(torch.zeros(n, 3, 2, 2), torch.zeros(n, dtype=torch.int64)) for n in (1000, 3, 5)]
    assert throughput.loader_rate(batches, max_batches=1) == 3  # the warm-up batch of 1000 is not timed
    assert throughput.loader_rate(batches, max_batches=5) == 8
    with pytest.raises(ValueError, match="no batches left"):
        throughput.loader_rate(batches[:1], max_batches=5)
