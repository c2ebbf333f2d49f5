"""Runtime settings: resolution and clear refusals, autocast training under a mask, the `run` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tkdlib import runtime
from tkdlib.__main__ import main
from tkdlib.masks import Mask
from tkdlib.runtime import CPU, Runtime
from tkdlib.train import Schedule, fit

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusals of a machine without CUDA")


@needs_no_cuda
def test_default_runtime_on_the_cpu_is_bf16_where_the_processor_has_it_else_float32(monkeypatch):
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: False)
    assert Runtime().resolved() == CPU
    assert CPU.describe() == {"device": "cpu", "precision": "fp32", "compile": False, "world_size": 1}
    monkeypatch.setattr(runtime, "native_cpu_bf16", lambda: True)
    assert Runtime().resolved() == Runtime("cpu", "bf16")


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the processor's flags from /proc/cpuinfo")
def test_native_bf16_is_what_the_processor_flags_say():
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split())
    assert runtime.native_cpu_bf16() == bool({"avx512_bf16", "amx_tile", "amx_bf16"} & flags)


@needs_no_cuda
@pytest.mark.parametrize(
    ("settings", "advice"),
    [({"device": "cpu", "precision": "fp16"}, "bf16"), ({"device": "cuda"}, "--device cpu"), ({"device": "tpu"}, "cuda:N")],
)
def test_settings_the_machine_cannot_honour_are_refused_with_advice(settings, advice):
    with pytest.raises(ValueError, match=advice):
        Runtime(**settings).resolved()


def test_unknown_precision_and_unresolved_settings_are_refused():
    with pytest.raises(ValueError, match="fp32"):
        Runtime(precision="half")
    with pytest.raises(ValueError, match="resolved"):
        Runtime().torch_device


def test_bf16_autocast_training_keeps_pruned_weights_exactly_zero(tiny_net):
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)) for _ in range(4)]
    keep = {name: torch.rand(tiny_net.get_parameter(name).shape, generator=generator) < 0.5 for name in ("conv.weight", "fc.weight")}
    before = {name: param.detach().clone() for name, param in tiny_net.named_parameters()}
    bf16 = Runtime("cpu", "bf16")
    with bf16.autocast():
        assert tiny_net(batches[0][0]).dtype == torch.bfloat16  # the path really autocasts
    history = fit(tiny_net, batches, Schedule(2, 0.1), mask=Mask(keep), runtime=bf16)
    assert all(torch.isfinite(torch.tensor(epoch["loss"])) for epoch in history)
    parameters = dict(tiny_net.named_parameters())
    for name, kept in keep.items():
        assert parameters[name].dtype == torch.float32
        assert not parameters[name][~kept].any()
        assert not torch.equal(parameters[name][kept], before[name][kept])


def test_run_command_needs_exactly_one_cell(capsys):
    assert main(["run", "--profile", "sample", "--dry-run"]) == 2
    assert "must select exactly one" in capsys.readouterr().err


@needs_no_cuda
def test_run_command_refuses_fp16_on_the_cpu_before_work(capsys):
    assert main(["run", "--profile", "sample", "--only", "magnitude", "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
