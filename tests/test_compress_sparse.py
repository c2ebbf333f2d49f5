"""Converting the uncompressed sparse students of earlier versions (`tkdlib.compress_sparse`)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from tkdlib.__main__ import main
from tkdlib.checkpoints import digest_path, record_sha256, sparse_model_of
from tkdlib.compress_sparse import compress_sparse_models
from tkdlib.io import sha256_of, write_json
from tkdlib.masks import global_mask, prunable_parameters
from tkdlib.models import build_model
from tkdlib.scoring import magnitude
from tkdlib.sparse_checkpoint import load_sparse, save_sparse

RUN = "0123456789ab"


def _old_run(out_dir: Path, run: str = RUN) -> dict:
    """A finished record naming an uncompressed sparse student, as earlier versions wrote them."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.95)
    mask.apply(model)
    old = out_dir / "checkpoints" / "sparse" / f"{run}.pt"
    save_sparse(model, mask, old)
    record = {
        "status": "finished",
        "accuracy": {"retrained": 0.5},
        "checkpoints": {"retrained": f"checkpoints/sparse/{run}.pt", "sha256": {"dense": "d" * 64, "retrained": record_sha256(old)}},
    }
    write_json(out_dir / run / "record.json", record)
    return record


def test_old_students_become_gzip_files_of_the_same_bytes_and_records_name_them(tmp_path: Path):
    before = _old_run(tmp_path)
    old = tmp_path / before["checkpoints"]["retrained"]
    old_bytes, old_state = old.read_bytes(), load_sparse(old)
    (converted,) = compress_sparse_models(tmp_path)
    new = tmp_path / "checkpoints" / "sparse" / f"{RUN}.pt.gz"
    assert converted.path == new == sparse_model_of(tmp_path, RUN)
    assert converted.bytes_before == len(old_bytes) and converted.bytes_after == new.stat().st_size < 0.8 * len(old_bytes)
    assert gzip.decompress(new.read_bytes()) == old_bytes
    assert not old.exists() and not digest_path(old).exists()
    after = json.loads((tmp_path / RUN / "record.json").read_text())
    assert after["checkpoints"] == {"retrained": f"checkpoints/sparse/{RUN}.pt.gz", "sha256": {"dense": "d" * 64, "retrained": sha256_of(new)}}
    assert digest_path(new).read_text().strip() == sha256_of(new)
    assert {key: value for key, value in after.items() if key != "checkpoints"} == {key: value for key, value in before.items() if key != "checkpoints"}
    loaded = load_sparse(new)
    assert all(torch.equal(loaded[name], old_state[name]) for name in old_state)
    assert compress_sparse_models(tmp_path) == []  # nothing left to convert


def test_a_conversion_killed_after_the_record_was_updated_removes_the_old_file_when_run_again(tmp_path: Path):
    old = tmp_path / _old_run(tmp_path)["checkpoints"]["retrained"]
    kept = old.read_bytes(), digest_path(old).read_bytes()
    compress_sparse_models(tmp_path)
    old.write_bytes(kept[0])  # as if killed between updating the record and removing the old files
    digest_path(old).write_bytes(kept[1])
    assert compress_sparse_models(tmp_path) == []
    assert not old.exists() and not digest_path(old).exists()


def test_a_student_that_does_not_match_its_record_stops_the_conversion_before_any_write(tmp_path: Path):
    old = tmp_path / _old_run(tmp_path)["checkpoints"]["retrained"]
    record_before = (tmp_path / RUN / "record.json").read_text()
    old.write_bytes(old.read_bytes()[:-1])
    with pytest.raises(ValueError, match=rf"{RUN}.pt is missing or does not match the sha256 .*git checkout"):
        compress_sparse_models(tmp_path)
    assert sparse_model_of(tmp_path, RUN) == old
    assert (tmp_path / RUN / "record.json").read_text() == record_before


def test_the_compress_command_reports_each_file_and_the_total(tmp_path: Path, capsys):
    _old_run(tmp_path)
    profile = tmp_path / "one.toml"
    profile.write_text('[config]\ndataset = "cifar10-sample"\nmethod = "magnitude"\n')
    assert main(["compress", "--profile", str(profile), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{RUN}.pt.gz" in out and "1 sparse students of one compressed:" in out
    assert main(["compress", "--profile", str(profile), "--out-dir", str(tmp_path)]) == 0
    assert "every sparse student of one is compressed already" in capsys.readouterr().out
