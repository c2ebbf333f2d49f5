"""Which kind of machine a record names, and when two kinds repeat each other's training."""

from __future__ import annotations

from pathlib import Path

import torch

from tkdlib.machine import cpu_identity, describe, machine_kind, same_kind

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
stepping\t: 0

processor\t: 1
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
"""


def test_cpu_identity_reads_the_model_name_family_and_model_number(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    identity = cpu_identity(cpuinfo)
    assert identity == {
        "cpu_model": "AMD EPYC", "cpu_family": "23", "cpu_model_number": "49", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    without = cpu_identity(tmp_path / "absent")
    assert without["cpu_family"] is None and without["cpu_model_number"] is None and without["cpu_model"]


def test_describe_names_what_the_record_kept():
    zen2 = {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_family": "23", "cpu_model_number": "49", "cpu_capability": "AVX2"}
    assert describe(zen2) == "AMD EPYC (family 23, model 49, AVX2)"
    assert describe({"device": "cpu", "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}) == "Intel(R) Xeon(R) Processor (AVX512)"
    assert describe({"device": "cpu"}) == "an unrecorded processor"
    assert describe({"device": "NVIDIA H200", "cpu_model": "AMD EPYC"}) == "NVIDIA H200"


def test_same_kind_compares_the_fields_both_name():
    here = machine_kind({"device": "cpu", "cpu_model": "AMD EPYC", "cpu_family": 23, "cpu_model_number": 49, "cpu_capability": "AVX2", "threads": 2})
    assert here == {"device": "cpu", "cpu_model": "AMD EPYC", "cpu_family": "23", "cpu_model_number": "49", "cpu_capability": "AVX2"}
    older_record = machine_kind({"device": "cpu", "cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "cpu_family": None})
    assert same_kind(older_record, here) is True  # it predates the family: what it names agrees
    assert same_kind({**older_record, "cpu_capability": "AVX512"}, here) is False  # same name, other kernels
    assert same_kind({**here, "cpu_model_number": "1"}, here) is False
    assert same_kind({**here, "device": "NVIDIA H200"}, here) is False
    assert same_kind({"device": "cpu"}, here) is None  # names no CPU: cannot tell
