"""The batch runner: expand a profile's grid and execute one notebook per cell with papermill.

Each cell runs ``notebooks/experiment.ipynb`` into ``<out_dir>/<config hash>/experiment.ipynb``;
a cell whose record exists is skipped, so a batch that was stopped resumes where it was. A cell
whose record says it failed is skipped too (it would fail the same way: a layer collapse, a
non-finite loss), unless the batch is told to retry failed cells. After the cells, the summary
notebooks (the profile's `pages`) are executed into ``book/generated/<profile>/`` for the book. A
job array splits a profile with shards (``--shard I/N``): each job runs every N-th cell, then the
summary notebooks over whatever records exist so far. Cells train in the profile's precision
(`Profile.runtime`). A cell stopped by `tkdlib.checkpoints.CheckpointHashError` (a committed
checkpoint whose bytes do not match its sha256) writes no record and stays to do.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from tkdlib.checkpoints import CHECKPOINTS, checkpoint_path
from tkdlib.experiment import Config, load_record, read_record, run, run_dir
from tkdlib.parking import PARKED_NAME, DeadlineReached, Parked, park, read_parked, stop_at
from tkdlib.pipelines import epochs_trained, training_epochs
from tkdlib.io import atomic_write
from tkdlib.plan import Estimate, Estimates, duration, own_seconds, summary
from tkdlib.profile import Profile, load_profile
from tkdlib.shared_networks import shared_phases

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
GENERATED = REPO_ROOT / "book" / "generated"
# Notebooks that read a profile's records and become pages of the book, in toc order.
# Example notebooks that belong to no profile: executed into ``book/generated/`` once, when missing.
EXAMPLE_NOTEBOOKS = ("own_model",)
# Config fields that the experiment notebook takes as parameters of their own; others go in `overrides`.
NOTEBOOK_FIELDS = ("dataset", "arch", "teacher_arch", "method", "sparsity", "seed")
T = TypeVar("T")  #: Any item type, for `shard`.


@dataclass(frozen=True)
class Cell:
    """One run of a profile: its config, its folder, and how it differs from the profile's base."""

    config: Config
    directory: Path
    changes: dict[str, Any]

    @property
    def done(self) -> bool:
        return load_record(self.directory) is not None

    @property
    def failure(self) -> str | None:
        """The error that stopped this cell's run, when its record says it failed; else None."""
        record = read_record(self.directory)
        return record["error"] if record is not None and record["status"] == "failed" else None

    def missing_checkpoints(self) -> dict[str, Path]:
        """The shared checkpoints this cell needs that are not on disk yet: phase → file."""
        folder = self.directory.parent / CHECKPOINTS
        paths = {phase: checkpoint_path(folder, self.config, phase) for phase in shared_phases(self.config)}
        return {phase: path for phase, path in paths.items() if not path.is_file()}

    def trained_fraction(self, kept: Parked | None = None) -> float:
        """The fraction of its own training epochs (`tkdlib.pipelines.training_epochs`) that a cell
        stopped midway has behind it, from the states it resumes from (`kept`, read here with
        `tkdlib.parking.read_parked` when not given); 0 for one not started."""
        kept = read_parked(self.directory) if kept is None else kept
        planned = training_epochs(self.config)
        if not kept or planned == 0:
            return 0.0
        return min(1.0, epochs_trained({name: len(state["history"]) for name, state in kept.items()}) / planned)

    def label(self) -> str:
        c = self.config
        extra = "".join(f" {name}={value}" for name, value in self.changes.items())
        return f"{c.dataset} {c.arch} {c.method} s={c.sparsity} seed={c.seed}{extra}"

    def selected_by(self, glob: str) -> bool:
        """Whether `glob` matches part of this cell's label or is its run hash (the run folder's
        name, as --dry-run lists it: how to pick one cell whose label is part of another's)."""
        return glob == self.directory.name or fnmatch.fnmatch(self.label(), f"*{glob}*")


def cells(profile: Profile, out_dir: str | Path | None = None, only: Sequence[str] = ()) -> list[Cell]:
    """The profile's cells in the grid's order; with globs `only`, those any of them selects
    (`Cell.selected_by`: ``["magnitude s=0.9", "snip", "ed67978eacce"]``: magnitude at 90 %, every
    SNIP cell and the cell run in folder ed67978eacce)."""
    if isinstance(only, str):
        raise TypeError(f"only is a list of globs: give [{only!r}], not {only!r}")
    root = Path(out_dir or profile.out_dir)
    found = [Cell(config, run_dir(config, root), profile.changes(config)) for config in profile.configs()]
    return [cell for cell in found if not only or any(cell.selected_by(glob) for glob in only)]


def estimates_of(every: list[Cell]) -> Estimates:
    """`Estimates` from the finished cells among `every`."""
    finished = ((cell, load_record(cell.directory)) for cell in every)
    return Estimates.from_records((cell.config, cell.changes, record) for cell, record in finished if record is not None)


@dataclass(frozen=True)
class CellLeft:
    """A cell still to run: its `tkdlib.plan.Estimate` (None: nothing like it finished) and the
    training states it resumes from (`tkdlib.parking.read_parked`; empty for one not started)."""

    cell: Cell
    estimate: Estimate | None
    kept: Parked


@dataclass(frozen=True)
class ToRun:
    """The cells of a selection still to run (neither finished nor failed), and the estimated
    seconds of each shared checkpoint they train first (None: none of its phase finished)."""

    cells: list[CellLeft]
    checkpoints: list[float | None]

    def summary(self) -> str:
        """`tkdlib.plan.summary` of these cells and checkpoints."""
        return summary([None if left.estimate is None else left.estimate.left for left in self.cells], self.checkpoints)


def to_run(selected: list[Cell], every: list[Cell]) -> ToRun:
    """The cells of `selected` still to run, estimated from the finished cells of `every`."""
    estimates = estimates_of(every)
    left = [cell for cell in selected if not cell.done and cell.failure is None]
    to_train = {path: phase for cell in left for phase, path in cell.missing_checkpoints().items()}  # each file once
    estimated = []
    for cell in left:
        kept = read_parked(cell.directory)
        estimated.append(CellLeft(cell, estimates.cell(cell.config, cell.changes, cell.trained_fraction(kept)), kept))
    return ToRun(estimated, [estimates.checkpoints.get(phase) for phase in to_train.values()])


def _print_cells(selected: list[Cell], every: list[Cell]) -> None:
    """One line per cell: ``done`` with the wall time of its own phases; ``failed`` when its record
    says it failed (a batch skips it unless told to retry failed cells), with the error; else
    ``todo``, with the time the finished cells of `every` like it took (`to_run`) and, for a cell
    stopped midway, the training states it resumes from (`tkdlib.parking.read_parked`). Then a line
    on how long the cells to run and the shared checkpoints they train first should take."""
    left = to_run(selected, every)
    estimated = {item.cell.directory: item for item in left.cells}
    for cell in selected:
        if (item := estimated.get(cell.directory)) is not None:
            status, note = "todo", "" if item.estimate is None else f"  ({item.estimate.note()})"
            if item.kept:
                note += f"  resumes: {item.kept.describe()}"
        elif (record := load_record(cell.directory)) is not None:
            status, note = "done", f"  ({duration(own_seconds(record))})"
        else:
            status, note = "failed", f"  ({_last_line(cell.failure or '')})"
        print(f"{status:9} {cell.directory.name}  {cell.label()}{note}")
    if left.cells:
        print(left.summary())


def _not_started(cell: Cell, every: list[Cell], seconds_left: float, parking: bool = False) -> str | None:
    """Why `cell` should not start with `seconds_left` of the batch's hours, or None if it fits:
    its estimate (`tkdlib.plan`, the shared checkpoints it would train first included) is longer,
    or there is nothing finished to estimate it from. When `parking` (the running cell is parked
    when the hours are over) only the shared checkpoints it trains first must fit (they are not
    parked), in the hours left."""
    estimates = estimates_of(every)
    if parking:
        if seconds_left <= 0:
            return "not started: the hours are over"
        what, seconds = "its shared checkpoints", estimates.checkpoint_seconds(cell.missing_checkpoints())
    else:
        what, seconds = "it", estimates.total(cell.config, cell.changes, cell.missing_checkpoints(), cell.trained_fraction())
    if seconds is None:
        return f"not started: no finished run to estimate {what} from; run it without --hours"
    if seconds > seconds_left:
        needed, left = duration(seconds), duration(max(seconds_left, 0))
        return f"not started: {what} should take ≈ {needed}, {'a little ' if needed == left else ''}more than the {left} left of --hours"
    return None


def _parked_line(cell: Cell) -> str:
    """Park `cell`, stopped when the hours were over; say what it keeps and where, to commit."""
    kept = park(cell.directory)
    if not kept:
        return f"{cell.label()}: stopped when the hours were over, before its first epoch ended: nothing to park"
    return f"{cell.label()}: stopped when the hours were over and parked: {kept.describe()}; commit {cell.directory / PARKED_NAME} and its .sha256"


def _last_line(text: str) -> str:
    """The last line of `text` (an error message: papermill's end on the exception), or ``""``."""
    return text.strip().splitlines()[-1] if text.strip() else ""


def parse_shard(text: str) -> tuple[int, int]:
    """Read ``"I/N"`` (shard I of N) into ``(I, N)``; raise `ValueError` saying what is wrong."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shard {text!r} is not of the form I/N, for example 2/5")
    index, count = int(match[1]), int(match[2])
    _check_shard(index, count)
    return index, count


def shard(items: list[T], index: int, count: int) -> list[T]:
    """Shard `index` of `count`: the items at 0-based positions k with k mod `count` = `index` − 1.

    Shards are numbered 1 to `count`; together they partition `items` and keep its order, so a job
    array whose jobs take the same profile and options, each its own shard, runs every cell once.
    """
    _check_shard(index, count)
    return items[index - 1 :: count]


def _check_shard(index: int, count: int) -> None:
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count} does not exist: shards are numbered 1..N, so I/N needs 1 <= I <= N")


def _shown(path: Path) -> str:
    """`path` as the notebooks get it: relative to the repository when inside it (the notebooks
    run there), so executed notebooks do not show this machine's folders."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def notebook_parameters(profile: Profile, cell: Cell, out_dir: Path, data_root: str | None) -> dict[str, Any]:
    """Papermill parameters that make the experiment notebook run exactly `cell.config`."""
    values = cell.config.to_dict()
    return {
        **{name: values[name] for name in NOTEBOOK_FIELDS},
        "profile": profile.reference,
        "overrides": {k: v for k, v in cell.changes.items() if k not in NOTEBOOK_FIELDS},
        "data_root": data_root,
        "out_dir": _shown(out_dir),
    }


def execute(notebook: str, output: Path, parameters: dict[str, Any]) -> None:
    """Execute `notebooks/<notebook>` with papermill into `output`.

    Papermill writes into a private file beside `output` that replaces it once execution ends,
    failed or not; so batches running at once (the shards of a job array all execute the results
    notebook) never interleave their writes, and `output` is always a whole notebook.
    """
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    running = output.with_name(f".{output.stem}.{os.getpid()}.running{output.suffix}")
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS / notebook), str(running), parameters=parameters, progress_bar=False, cwd=str(REPO_ROOT)
        )
    finally:
        if running.is_file():
            _fold_injected_parameters(running)
            os.replace(running, output)


def _fold_injected_parameters(path: Path) -> None:
    """Show papermill's injected-parameters cell as the book shows the parameters cell it
    overrides: removed where that one is tagged ``remove-cell`` (the summary pages), folded
    (``hide-cell``) elsewhere, so no page shows the defaults while hiding the values used."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    removed = any("parameters" in tags and "remove-cell" in tags for tags in (cell.metadata.get("tags", []) for cell in notebook.cells))
    wanted = "remove-cell" if removed else "hide-cell"
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and wanted not in tags:
            tags.append(wanted)
    with atomic_write(path, "w") as handle:
        nbformat.write(notebook, handle)


def run_batch(
    profile_name: str | Path,
    out_dir: str | Path | None = None,
    data_root: str | None = None,
    only: Sequence[str] = (),
    dry_run: bool = False,
    book_dir: Path = GENERATED,
    shard_of: tuple[int, int] | None = None,
    notebooks: bool = True,
    examples: bool = False,
    run_cells: bool = True,
    retry_failed: bool = False,
    hours: float | None = None,
    park_at_end: bool = False,
) -> int:
    """Run every missing cell of a profile, then the summary notebooks; returns the number of failures.

    `shard_of` ``(I, N)`` keeps shard I of N of the cells selected by the globs `only` (see `cells`
    and `shard`); the summary notebooks then read every finished record under the out_dir,
    whichever shard wrote it.
    With `notebooks` false the cells are run directly with `tkdlib.experiment.run`, without
    papermill, executed notebooks or summary notebooks (the same records). With `examples`, the
    example notebooks (`EXAMPLE_NOTEBOOKS`) are also executed into `book_dir`, once. With
    `run_cells` false no cell runs: only the summary notebooks are executed over the records that
    exist (how the book renders a profile whose missing cells need data or hours it does not have).
    Cells whose record says they failed are skipped unless `retry_failed`. With `hours`, a cell
    starts only if the finished cells like it (`tkdlib.plan`) say it and the shared checkpoints it
    trains first end within that many hours of the batch's start; the others are listed as not
    started. With `park_at_end` as well (cells run directly, `notebooks` false), cells start while
    hours are left, whatever they should take (only the shared checkpoints they train first must
    end in time: those are not parked), and when the hours are over the running cell is stopped
    and parked (`tkdlib.parking`): its states go to a file to commit, from which a later sitting
    resumes it. A profile that does not load, an `only` that selects no cell, `hours` ≤ 0, or
    `park_at_end` without `hours` or with `notebooks` raises `ValueError` before any work.
    """
    if not (run_cells or notebooks):
        raise ValueError("with neither cells nor notebooks there is nothing to do: drop --summaries-only or --no-notebooks")
    if hours is not None and not hours > 0:
        raise ValueError(f"--hours must be a positive number of hours, got {hours}")
    if park_at_end and (hours is None or notebooks):
        raise ValueError("--park stops the running cell when the --hours are over: give --hours, and --no-notebooks (cells run in this process)")
    deadline = None if hours is None else time.monotonic() + hours * 3600
    profile = load_profile(profile_name)
    root = Path(out_dir or profile.out_dir).resolve()
    every = cells(profile, root)
    todo = cells(profile, root, only)
    if only and not todo:
        raise ValueError(
            f"--only {' --only '.join(map(repr, only))} selects no cell of {profile.name}: "
            f"list the cell labels with python -m tkdlib batch --profile {profile.reference} --dry-run"
        )
    if shard_of is not None:
        selected = len(todo)
        todo = shard(todo, *shard_of)
        print(f"shard {shard_of[0]}/{shard_of[1]}: {len(todo)} of {selected} cells")
    if dry_run:
        _print_cells(todo, every)
        return 0
    failures: list[str] = []
    not_run: list[str] = []
    for cell in tqdm(todo if run_cells else [], desc=f"batch {profile.name}", unit="run"):
        if cell.done:
            continue
        if not retry_failed and cell.failure is not None:
            not_run.append(f"{cell.label()}: it failed before ({_last_line(cell.failure)}); --retry-failed runs it again")
            continue
        if deadline is not None and (reason := _not_started(cell, every, deadline - time.monotonic(), park_at_end)):
            not_run.append(f"{cell.label()}: {reason}")
            continue
        if notebooks:
            parameters = notebook_parameters(profile, cell, root, data_root)
            failures += _attempt(cell.label(), cell.directory, execute, "experiment.ipynb", cell.directory / "experiment.ipynb", parameters)
        else:
            try:
                with stop_at(deadline - time.monotonic()) if park_at_end else contextlib.nullcontext():
                    failures += _attempt(cell.label(), cell.directory, run, cell.config, root, data_root, False, profile.runtime())
            except DeadlineReached:
                not_run.append(_parked_line(cell))
                deadline = time.monotonic()  # the hours are over: no other cell starts
    summary = {"profile": profile.reference, "out_dir": _shown(root)}
    for name in profile.pages if notebooks else ():
        output = book_dir / profile.name / f"{name}.ipynb"
        failures += _attempt(name, output, execute, f"{name}.ipynb", output, summary)
    for name in EXAMPLE_NOTEBOOKS if notebooks and examples else ():
        output = book_dir / f"{name}.ipynb"
        if not output.is_file():
            failures += _attempt(name, output, execute, f"{name}.ipynb", output, {})
    print(summary_table(todo))
    for line in not_run:
        print(f"NOT RUN {line}")
    for failure in failures:
        print(f"FAILED {failure}")
    return len(failures)


def _attempt(label: str, output: Path, work: Callable[..., object], *arguments: object) -> list[str]:
    """Call `work(*arguments)`; on failure return one line saying where to look (`output`) instead of raising."""
    try:
        work(*arguments)
    except Exception as error:  # papermill's errors carry the failing cell; the executed notebook keeps it
        return [f"{label}: {_last_line(str(error)) or type(error).__name__} (see {output})"]
    return []


def summary_table(todo: list[Cell]) -> str:
    """One line per cell: its label and final accuracy (or 'failed', or 'missing')."""
    lines = []
    for cell in todo:
        record = read_record(cell.directory)
        result = "missing" if record is None else "failed" if record["status"] == "failed" else f"{record['accuracy']['retrained']:.3f}"
        lines.append(f"{cell.label():<60} retrained accuracy {result}")
    return "\n".join(lines)
