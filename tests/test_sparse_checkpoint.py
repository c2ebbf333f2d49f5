from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tkdlib.masks import global_mask, prunable_parameters
from tkdlib.models import build_model
from tkdlib.scoring import magnitude
from tkdlib.sparse_checkpoint import load_sparse, load_sparse_mask, save_sparse, save_sparse_mask


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, to compare bit patterns (torch.equal calls -0.0 == +0.0)."""
    return tensor.reshape(-1).contiguous().view(torch.uint8)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    sparsity=st.floats(0.0, 1.0),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact_for_any_shape_sparsity_and_dtype(tmp_path_factory, shape, sparsity, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=generator) >= sparsity
    weight = torch.where(keep, torch.randn(shape, generator=generator), 0.0).to(dtype)
    bias = torch.randn(shape[0], generator=generator).to(dtype)
    path = tmp_path_factory.mktemp("ckpt") / "sparse.pt"
    save_sparse({"w": weight, "b": bias}, {"w": keep}, path)
    loaded = load_sparse(path)
    assert list(loaded) == ["w", "b"]
    for name, original in (("w", weight), ("b", bias)):
        assert loaded[name].dtype == dtype and loaded[name].shape == original.shape
        assert torch.equal(_bits(loaded[name]), _bits(original)), name
    mask = load_sparse_mask(path)
    assert list(mask) == ["w"] and mask["w"].dtype == torch.bool and torch.equal(mask["w"], keep)


def test_real_pruned_resnet20_loads_back_identical_and_small(tmp_path: Path):
    torch.manual_seed(0)
    model = build_model("resnet20", 10).to(memory_format=torch.channels_last)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.95)
    mask.apply(model)
    save_sparse(model, mask, tmp_path / "sparse.pt")
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    loaded = load_sparse(tmp_path / "sparse.pt")
    state = model.state_dict()
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
        if name not in mask:
            assert torch.equal(_bits(loaded[name]), _bits(tensor)), name
        else:  # kept weights bit for bit; pruned ones are +0.0 (a multiplied-away negative was -0.0)
            assert torch.equal(_bits(loaded[name][mask[name]]), _bits(tensor[mask[name]])), name
            assert not torch.signbit(loaded[name][~mask[name]]).any(), name
    fresh = build_model("resnet20", 10)
    fresh.load_state_dict(loaded)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x), rtol=0, atol=1e-5)
    assert (tmp_path / "sparse.pt").stat().st_size < 0.15 * (tmp_path / "dense.pt").stat().st_size


def test_a_gz_name_writes_a_smaller_gzip_file_that_loads_to_the_same_tensors(tmp_path: Path):
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.95)
    mask.apply(model)
    save_sparse(model, mask, tmp_path / "sparse.pt")
    save_sparse(model, mask, tmp_path / "sparse.pt.gz")
    assert gzip.decompress((tmp_path / "sparse.pt.gz").read_bytes()) == (tmp_path / "sparse.pt").read_bytes()
    assert (tmp_path / "sparse.pt.gz").stat().st_size < 0.8 * (tmp_path / "sparse.pt").stat().st_size
    plain, compressed = load_sparse(tmp_path / "sparse.pt"), load_sparse(tmp_path / "sparse.pt.gz")
    assert list(plain) == list(compressed) and all(torch.equal(_bits(plain[name]), _bits(compressed[name])) for name in plain)
    assert all(torch.equal(keep, mask[name]) for name, keep in load_sparse_mask(tmp_path / "sparse.pt.gz").items())
    raw = (tmp_path / "sparse.pt.gz").read_bytes()
    (tmp_path / "truncated.pt.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated.pt.gz is not a readable sparse checkpoint"):
        load_sparse(tmp_path / "truncated.pt.gz")
    (tmp_path / "garbled.pt.gz").write_bytes(raw[:20] + bytes(len(raw) - 20))
    with pytest.raises(ValueError, match="garbled.pt.gz is not a readable sparse checkpoint"):
        load_sparse(tmp_path / "garbled.pt.gz")


def test_a_mask_not_applied_is_refused_before_writing(tmp_path: Path):
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.9)
    with pytest.raises(ValueError, match="non-zero values at pruned positions"):
        save_sparse(model, mask, tmp_path / "sparse.pt")
    assert not (tmp_path / "sparse.pt").exists()


@pytest.mark.parametrize(
    ("mask", "error", "message"),
    [
        ({"missing": torch.ones(2, dtype=torch.bool)}, ValueError, "not in the state_dict"),
        ({"w": torch.ones(3, dtype=torch.bool)}, ValueError, "shape"),
        ({"w": torch.ones(2)}, TypeError, "torch.bool"),
    ],
)
def test_a_wrong_mask_is_refused(tmp_path: Path, mask, error, message):
    with pytest.raises(error, match=message):
        save_sparse({"w": torch.ones(2)}, mask, tmp_path / "sparse.pt")


def test_wrong_or_corrupt_files_are_refused_clearly(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_sparse(tmp_path / "absent.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable sparse checkpoint"):
        load_sparse(tmp_path / "text.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "dense.pt")
    with pytest.raises(ValueError, match="not a sparse checkpoint"):
        load_sparse(tmp_path / "dense.pt")

    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    save_sparse({"w": weight}, {"w": weight != 0}, tmp_path / "sparse.pt")
    raw = (tmp_path / "sparse.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable sparse checkpoint"):
        load_sparse(tmp_path / "truncated.pt")

    content = torch.load(tmp_path / "sparse.pt", weights_only=True)
    bits, values = content["packed"]["bits"], content["packed"]["values"]["float32"]
    for packed, message in [
        ({"bits": bits, "values": {"float32": values[:2]}}, "fewer stored values"),
        ({"bits": bits, "values": {"float32": torch.cat([values, values])}}, "more packed bits or values"),
        ({"bits": bits[:0], "values": {"float32": values}}, "cut short"),
        ({"bits": bits | 1, "values": {"float32": values}}, "bits set past"),
        ({"bits": bits, "values": {"float64": values.double()}}, "fewer stored values"),
    ]:
        torch.save({**content, "packed": packed}, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=message):
            load_sparse(tmp_path / "bad.pt")
    torch.save({**content, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version 99"):
        load_sparse(tmp_path / "future.pt")


def test_bitmasks_cost_one_bit_per_weight_and_values_one_per_kept_weight(tmp_path: Path):
    weight = torch.zeros(1000, 100)
    keep = torch.zeros_like(weight, dtype=torch.bool)
    keep[:, 0] = True
    weight[keep] = 1.0
    bias = torch.zeros(3, dtype=torch.float64)
    save_sparse({"w": weight, "v": bias, "b": bias}, {"w": keep, "v": bias == 0}, tmp_path / "sparse.pt")
    packed = torch.load(tmp_path / "sparse.pt", weights_only=True)["packed"]
    assert packed["bits"].numel() == math.ceil(weight.numel() / 8) + 1
    assert packed["values"]["float32"].numel() == 1000 and packed["values"]["float64"].numel() == 3


def test_a_mask_alone_round_trips_in_one_bit_per_weight_and_is_not_read_as_weights(tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    mask = {"conv": torch.rand(16, 3, 3, 3, generator=generator) > 0.9, "fc": torch.rand(10, 7, generator=generator) > 0.5}
    save_sparse_mask(mask, tmp_path / "mask.pt")
    loaded = load_sparse_mask(tmp_path / "mask.pt")
    assert list(loaded) == list(mask) and all(torch.equal(loaded[name], keep) for name, keep in mask.items())
    packed = torch.load(tmp_path / "mask.pt", weights_only=True)["packed"]
    assert packed["bits"].numel() == math.ceil(16 * 27 / 8) + math.ceil(70 / 8) and packed["values"] == {}
    with pytest.raises(ValueError, match="holds only a mask"):
        load_sparse(tmp_path / "mask.pt")
    with pytest.raises(TypeError, match="torch.bool"):
        save_sparse_mask({"conv": torch.ones(3)}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
