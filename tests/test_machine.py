"""Which kind of machine a record names."""

from __future__ import annotations

from pathlib import Path

import torch

from tkdlib.machine import cpu_identity, describe, machine_kind

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


