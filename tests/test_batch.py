"""The batch runner executes the experiment and results notebooks with papermill, end to end, and shards."""

from __future__ import annotations

import json
import math
import re
import shutil

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import TINY_PROFILE
from tkdlib.__main__ import main
from tkdlib.batch import cells, parse_shard, run_batch, shard
from tkdlib.experiment import load_record
from tkdlib.profile import load_profile
from tkdlib.report import remaining_runs, remaining_text, runs_left


def glued(notebook_path) -> dict[str, str]:
    """The values a results notebook glued for the book, as text."""
    notebook = nbformat.read(notebook_path, as_version=4)
    outputs = [o for c in notebook.cells for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})]
    return {o.metadata.scrapbook.name: o.data.get(f"{o.metadata.scrapbook.mime_prefix}text/plain") for o in outputs}


def test_batch_runs_notebooks_and_resumes(tiny_batch, capsys):
    assert tiny_batch.failures == 0
    records = sorted(tiny_batch.out_dir.glob("*/record.json"))
    assert len(records) == 3
    executed = nbformat.read(records[0].parent / "experiment.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-cell" in injected[0].metadata["tags"]  # the how-to keeps its parameters, folded
    summary = nbformat.read(tiny_batch.results, as_version=4)
    injected = [c for c in summary.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]  # a summary page shows no parameters at all
    assert summary.metadata["mystnb"]["remove_code_source"]
    assert set(glued(tiny_batch.results)) >= {"accuracy_teacher_guided", "accuracy_magnitude", "headline_text"}
    # A second batch finds every record and recomputes nothing.
    before = {path: path.stat().st_mtime_ns for path in records}
    assert run_batch(tiny_batch.profile, out_dir=tiny_batch.out_dir, book_dir=tiny_batch.book_dir) == 0
    assert "retrained accuracy" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in records} == before
    assert all(load_record(path.parent)["config"]["sparsity"] == 0.8 for path in records)
    assert json.loads((records[0].parent / "config.json").read_text())["train_subset"] == 128
    assert not list(tiny_batch.book_dir.rglob(".*")), "papermill's private output files are renamed away"


def test_results_notebook_runs_after_one_shard(tiny_batch, tmp_path):
    """Shard 1/3 of the tiny profile is its teacher-guided cell; with only that record present the
    shard skips it and the results notebook reads the one record there is."""
    first = cells(load_profile(tiny_batch.profile), tiny_batch.out_dir)[0]
    assert first.config.method == "teacher_guided"
    out_dir, book_dir = tmp_path / "runs", tmp_path / "book"
    shutil.copytree(first.directory, out_dir / first.directory.name)
    assert run_batch(tiny_batch.profile, out_dir=out_dir, book_dir=book_dir, shard_of=(1, 3)) == 0
    values = glued(book_dir / "tiny" / "results.ipynb")
    assert values["runs"] == "1" and "accuracy_magnitude" not in values


def test_summaries_only_runs_no_cell(tiny_batch, tmp_path):
    """With one of three records present, --summaries-only runs none of the other two and the
    results page says that no other method has finished."""
    profile = load_profile(tiny_batch.profile)
    first = cells(profile, tiny_batch.out_dir)[0]
    out_dir, book_dir = tmp_path / "runs", tmp_path / "book"
    shutil.copytree(first.directory, out_dir / first.directory.name)
    assert run_batch(tiny_batch.profile, out_dir=out_dir, book_dir=book_dir, run_cells=False) == 0
    assert [cell.done for cell in cells(profile, out_dir)] == [True, False, False]
    assert "No other method has finished there yet." in glued(book_dir / "tiny" / "results.ipynb")["headline_text"]
    with pytest.raises(SystemExit):
        main(["batch", "--profile", str(tiny_batch.profile), "--summaries-only", "--no-notebooks"])


@given(st.lists(st.integers(), max_size=30), st.integers(1, 8))
def test_shards_partition_the_cells_in_order(items, count):
    shards = [shard(items, index, count) for index in range(1, count + 1)]
    assert sorted(x for part in shards for x in part) == sorted(items)
    for index, part in enumerate(shards, start=1):
        positions = [k for k in range(len(items)) if k % count == index - 1]
        assert part == [items[k] for k in positions]


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    assert parse_shard(" 1 / 1 ") == (1, 1)
    for text, message in [("0/3", "numbered 1..N"), ("4/3", "numbered 1..N"), ("1/0", "numbered 1..N"),
                          ("2", "form I/N"), ("a/b", "form I/N"), ("-1/3", "form I/N"), ("1/2/3", "form I/N")]:
        with pytest.raises(ValueError, match=message):
            parse_shard(text)


FIVE_CELLS = """
[config]
dataset = "cifar10-sample"
[[grid]]
method = ["magnitude"]
sparsity = [0.1, 0.2, 0.3, 0.4, 0.5]
"""


def test_dry_run_lists_only_the_shard(tmp_path, capsys):
    profile = tmp_path / "five.toml"
    profile.write_text(FIVE_CELLS)
    common = ["batch", "--profile", str(profile), "--out-dir", str(tmp_path / "runs"), "--dry-run"]
    assert main(common + ["--shard", "2/3"]) == 0
    out = capsys.readouterr().out
    assert "shard 2/3: 2 of 5 cells" in out
    assert [line.split()[-2] for line in out.splitlines()[1:-1]] == ["s=0.2", "s=0.5"]
    assert out.splitlines()[-1] == "2 runs left, nothing finished to estimate them from; and 2 shared checkpoints to train first (not estimated)"
    assert main(common + ["--shard", "3/3", "--only", "s=0.[1234]"]) == 0
    assert [line.split()[-2] for line in capsys.readouterr().out.splitlines()[1:-1]] == ["s=0.3"]


def test_repeated_only_selects_the_cells_any_glob_selects_in_the_grids_order(tmp_path, capsys):
    profile = tmp_path / "five.toml"
    profile.write_text(FIVE_CELLS)
    common = ["batch", "--profile", str(profile), "--out-dir", str(tmp_path / "runs"), "--dry-run"]
    assert main(common + ["--only", "s=0.5", "--only", "s=0.[12]"]) == 0
    assert [line.split()[-2] for line in capsys.readouterr().out.splitlines()[:-1]] == ["s=0.1", "s=0.2", "s=0.5"]
    with pytest.raises(TypeError, match=r"give \['s=0.5'\]"):  # a string is no list of globs: each letter would be one
        cells(load_profile(profile), tmp_path, "s=0.5")


NESTED_LABELS = """
[config]
dataset = "cifar10-sample"
method = "magnitude"
sparsity = 0.5
[[grid]]
seed = [0]
[[grid]]
seed = [0]
layer_floor = [0.01]
"""


def test_a_run_hash_selects_the_one_cell_whose_label_is_part_of_anothers(tmp_path):
    """The plain cell's label is part of its floored twin's, so only its run hash picks it alone;
    a glob of hex letters that is part of a hash but no label selects nothing."""
    profile = tmp_path / "nested.toml"
    profile.write_text(NESTED_LABELS)
    plain, floored = cells(load_profile(profile), tmp_path)
    assert floored.label() == f"{plain.label()} layer_floor=0.01"
    assert cells(load_profile(profile), tmp_path, [plain.label()]) == [plain, floored]
    assert cells(load_profile(profile), tmp_path, [plain.directory.name]) == [plain]
    assert cells(load_profile(profile), tmp_path, [plain.directory.name[:6]]) == []


def test_only_that_selects_no_cell_is_an_error_before_any_work(tmp_path, capsys):
    profile = tmp_path / "five.toml"
    profile.write_text(FIVE_CELLS)
    out_dir = tmp_path / "runs"
    assert main(["batch", "--profile", str(profile), "--out-dir", str(out_dir), "--only", "s=0.9"]) == 2
    err = capsys.readouterr().err
    assert "error: --only 's=0.9' selects no cell of five" in err
    assert f"--profile {profile.resolve()} --dry-run" in err
    assert not out_dir.exists()
    assert main(["batch", "--profile", "no-such-profile", "--out-dir", str(out_dir)]) == 2
    assert "Unknown profile 'no-such-profile'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [("0/3", "shard 0/3 does not exist"), ("4/3", "shard 4/3 does not exist"), ("3", "shard '3' is not of the form I/N")],
)
def test_bad_shard_is_a_usage_error_before_any_work(tmp_path, capsys, value, message):
    out_dir = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", "--profile", "sample", "--out-dir", str(out_dir), "--shard", value])
    assert exit_info.value.code == 2
    assert f"argument --shard: {message}" in capsys.readouterr().err
    assert not out_dir.exists()


def test_a_failed_cell_is_listed_and_skipped_until_the_batch_is_told_to_retry_it(tiny_batch, tmp_path, capsys):
    out_dir = tmp_path / "runs"
    shutil.copytree(tiny_batch.out_dir, out_dir)  # with the shared checkpoints: retrying only retrains
    magnitude = next(cell for cell in cells(load_profile(tiny_batch.profile), out_dir) if cell.config.method == "magnitude")
    error = "LayerCollapseError: At sparsity 0.8 these layers would keep no weight: ['fc.weight']."
    failed = {"status": "failed", "config": magnitude.config.to_dict(), "config_hash": magnitude.config.key(), "error": error}
    (magnitude.directory / "record.json").write_text(json.dumps(failed))
    common = ["batch", "--profile", str(tiny_batch.profile), "--out-dir", str(out_dir), "--only", "magnitude", "--no-notebooks"]

    assert main(common + ["--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == f"failed    {magnitude.directory.name}  {magnitude.label()}  ({error})"
    # The other cells list their own minutes; a cell to run is estimated from its method's finished cells.
    assert main(["batch", "--profile", str(tiny_batch.profile), "--out-dir", str(out_dir), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(re.fullmatch(r"done .*  \(\d+ (s|min)\)", line) for line in lines if not line.startswith("failed"))
    assert len(lines) == 3
    assert main(common) == 0
    out = capsys.readouterr().out
    assert f"NOT RUN {magnitude.label()}: it failed before ({error}); --retry-failed runs it again" in out
    assert "retrained accuracy failed" in out and magnitude.failure == error
    assert main(["run", "--profile", str(tiny_batch.profile), "--out-dir", str(out_dir), "--only", "magnitude", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"failed  {magnitude.directory}  {magnitude.label()}  ({error}; running it tries again)")

    assert main(common + ["--retry-failed"]) == 0
    assert magnitude.failure is None and magnitude.done


def test_hours_start_only_the_cells_their_estimates_say_will_end_in_time(tiny_batch, tmp_path, capsys):
    """A second seed of magnitude is estimated from the first (and its teacher and dense student,
    which it trains first, from the first seed's); SNIP, none of whose runs finished, by its epochs
    at the pace of the finished runs (all retrain under the teacher); EPSD has nothing to be
    estimated from (no finished run trains by self-distillation). Too few hours start none;
    enough start those with an estimate."""
    out_dir = tmp_path / "runs"
    shutil.copytree(tiny_batch.out_dir, out_dir)
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE + '[[grid]]\nmethod = ["magnitude"]\nsparsity = [0.8]\nseed = [1]\n[[grid]]\nmethod = ["snip", "epsd"]\nsparsity = [0.8]\n')
    common = ["batch", "--profile", str(profile), "--out-dir", str(out_dir), "--no-notebooks"]

    assert main(common + ["--dry-run", "--only", "seed=1"]) == 0
    assert re.fullmatch(r"1 run left: ≈ \d+ (s|min), from the finished runs; and 2 shared checkpoints to train first \(≈ \d+ (s|min)\)", capsys.readouterr().out.splitlines()[-1])
    assert main(common + ["--hours", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"NOT RUN \S+ resnet20 magnitude s=0.8 seed=1: not started: it should take ≈ \d+ (s|min), more than the 0 s left of --hours", out)
    assert re.search(r"NOT RUN \S+ resnet20 snip s=0.8 seed=0: not started: it should take ≈ \d+ (s|min), more than", out)
    assert "NOT RUN cifar10-sample resnet20 epsd s=0.8 seed=0: not started: no finished run to estimate it from" in out
    left = remaining_runs(runs_left(out_dir, load_profile(profile)))
    assert list(left["method"]) == ["magnitude", "SNIP", "EPSD (our re-implementation)"] and list(left["seed"]) == [1, 0, 0]
    assert left["estimated minutes"].iloc[1] >= 0 and math.isnan(left["estimated minutes"].iloc[2])
    assert list(left["estimated from"]) == ["1 finished run like it", "1 epoch at the pace of 3 finished runs", "nothing finished to estimate from"]
    assert remaining_text(runs_left(out_dir, load_profile(profile))).startswith("3 runs left: ≈ ")
    assert main(common + ["--hours", "1"]) == 0
    out = capsys.readouterr().out
    seed_1, snip, epsd = (next(cell for cell in cells(load_profile(profile), out_dir) if cell.config.method == method and cell.config.seed == seed)
                          for method, seed in (("magnitude", 1), ("snip", 0), ("epsd", 0)))
    assert seed_1.done and snip.done and not epsd.done and "epsd s=0.8 seed=0: not started" in out
    assert main(common + ["--hours", "0"]) == 2
    assert "--hours must be a positive number of hours, got 0.0" in capsys.readouterr().err
