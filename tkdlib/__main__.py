"""Command line: ``python -m tkdlib prune``, ``run``, ``report``, ``checkpoints``, ``park`` and ``batch`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import Any

from tkdlib.batch import cells, parse_shard, run_batch
from tkdlib.config import METHODS, SELF_TEACHER, Config
from tkdlib.data import DATASET_NAMES
from tkdlib.masks import Mask
from tkdlib.models import ARCHITECTURES
from tkdlib.profile import Profile, available_profiles, load_profile
from tkdlib.runtime import PRECISIONS, Runtime, distributed, rank

PRUNE_EXAMPLE = """\
examples:
  python -m tkdlib prune --config run.toml
  python -m tkdlib prune --method magnitude --sparsity 0.8 --out-dir runs/mine
  python -m tkdlib prune --config run.toml --sparsity 0.95   # flags override the file

run.toml holds Config fields at its top level, for example:
  dataset = "cifar10-sample"
  arch = "resnet20"
  teacher_arch = "resnet56"
  method = "teacher_guided"
  sparsity = 0.9
  student_epochs = 30

The run directory <out-dir>/<config hash>/ receives record.json, mask.pt (+ mask.pt.json,
the sparsity report) and model.pt (the retrained student's state_dict); a finished run is not
recomputed. Sparsity is the fraction of prunable weights removed (0.9 = 90 % zeros).
"""

# Config fields whose value is a name: their choices are listed in --help.
CHOICES = {"dataset": DATASET_NAMES, "arch": tuple(ARCHITECTURES), "teacher_arch": (*ARCHITECTURES, SELF_TEACHER), "method": METHODS}

RUN_EXAMPLE = """\
examples:
  python -m tkdlib run --profile sample --only "magnitude s=0.9 seed=0" --dry-run   # which cell?
  python -m tkdlib run --profile cpu --only "teacher_guided s=0.95 seed=1" --device cuda
  torchrun --standalone --nproc_per_node 4 -m tkdlib run --profile cpu --only "teacher_guided s=0.95 seed=1"

--only is a glob on the cell labels that `python -m tkdlib batch --profile P --dry-run` lists, or
the run hash it lists beside one; it must select exactly one cell. Under torchrun (WORLD_SIZE > 1) every process joins the process
group (nccl on CUDA, gloo on the CPU), each trains on its slice of every batch with
DistributedDataParallel (SyncBatchNorm on CUDA), and rank 0 writes the record.
"""

REPORT_EXAMPLE = """\
example:
  python -m tkdlib report runs/cli/0123456789ab/mask.pt
"""


PARK_EXAMPLE = """\
examples: a sitting that must end within 2 hours runs cells as far as it gets, then parks the one running
  python -m tkdlib batch --profile cifar10-converged --no-notebooks --hours 2 --park
  python -m tkdlib batch --profile cifar10-converged --dry-run   # "resumes: retrain1 done (20 epochs), ..."
or, for a batch that was killed:
  python -m tkdlib park --profile cifar10-converged
then commit the parked files: the next sitting's batch, in a fresh checkout, resumes the cells from them
  git add runs/cifar10-converged/*/parked.pt.gz*
"""


def _toml_value(text: str) -> Any:
    """A flag's value read as a TOML value (0.9, 3, true, "a b"); anything else is a plain string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _add_prune_commands(commands: argparse._SubParsersAction) -> None:
    """The ``prune`` and ``report`` subcommands."""
    prune = commands.add_parser(
        "prune",
        help="run one experiment (train, prune, retrain) on the project's models",
        description="Run one experiment with tkdlib.experiment.run and print where its record, mask and model are.",
        epilog=PRUNE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("--config", type=Path, default=None, help="a TOML file of Config fields (flags override it)")
    prune.add_argument("--out-dir", default="runs/cli", help="where runs live (default: runs/cli)")
    prune.add_argument("--data-root", default=None, help="folder holding the datasets (default: $TKD_DATA)")
    fields = prune.add_argument_group("Config fields", "values in TOML syntax: 0.9, 3, true, resnet20 (see tkdlib.config.Config)")
    for field in dataclasses.fields(Config):
        flag = f"--{field.name.replace('_', '-')}"
        choices = f"one of {', '.join(CHOICES[field.name])}; " if field.name in CHOICES else ""
        fields.add_argument(flag, dest=field.name, type=_toml_value, default=None, metavar="VALUE", help=f"{choices}default: {field.default!r}")
    _add_runtime_arguments(prune)
    run = commands.add_parser(
        "run",
        help="run one cell of a profile, in one process or under torchrun on several GPUs",
        description="Run the one cell of a profile that --only selects with tkdlib.experiment.run.",
        epilog=RUN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_arguments(run)
    run.add_argument("--only", default=None, help="glob on the cell labels that selects exactly one cell (not needed for a one-cell profile)")
    run.add_argument("--dry-run", action="store_true", help="print the selected cell and its run folder, run nothing")
    _add_runtime_arguments(run)
    report = commands.add_parser(
        "report",
        help="print the overall and per-layer density of a saved mask",
        description="Print the overall and per-layer density (fraction of weights kept) of a mask written by Mask.save.",
        epilog=REPORT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("mask", type=Path, help="a mask file written by Mask.save (e.g. <run directory>/mask.pt)")
    shared = commands.add_parser(
        "checkpoints",
        help="train a profile's shared teacher and dense students only (the longest phases), skipping those on disk",
        description="Train the teacher and dense-student checkpoints that a profile's cells need, as its runs would, and nothing "
        "else; those on disk are checked against their sha256. Every epoch's state is kept, so a killed training resumes.",
    )
    _add_profile_arguments(shared)
    shared.add_argument("--phase", choices=("dense", "teacher"), default=None, help="only this kind of checkpoint (default: both)")
    shared.add_argument("--seed", type=int, default=None, help="only the checkpoints of the cells of this seed")
    _add_runtime_arguments(shared)
    park = commands.add_parser(
        "park",
        help="pack the training states of a profile's unfinished cells into files to commit, so a later sitting resumes them",
        description="For every cell of a profile stopped midway (its batch killed), pack its per-epoch training states "
        "(<run>/partial/, not committed) into <run>/parked.pt.gz with its sha256 sidecar (tkdlib.parking). Commit those files: "
        "a fresh checkout then resumes the cell where it stopped. Stop the batch first.",
        epilog=PARK_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_arguments(park, data_root=False)
    park.add_argument("--only", action="append", default=[], metavar="GLOB", help="park only cells whose label contains this glob (repeatable)")
    compress = commands.add_parser(
        "compress",
        help="gzip the uncompressed sparse students that earlier versions wrote, and point their records at the new files",
        description="Convert every checkpoints/sparse/<config hash>.pt that a finished record of the profile names into "
        "<config hash>.pt.gz, as runs now write them (tkdlib.compress_sparse): checked against the record's sha256 first; "
        "the record's checkpoints entry then names the new file. Commit the new files, the records and the removals.",
    )
    _add_profile_arguments(compress, data_root=False)


def _add_profile_arguments(parser: argparse.ArgumentParser, data_root: bool = True) -> None:
    """--profile, --out-dir and (unless not `data_root`) --data-root: which profile's cells, where
    their runs live, where the data is."""
    parser.add_argument("--profile", required=True, help=f"one of {', '.join(available_profiles())}, or a .toml path")
    parser.add_argument("--out-dir", default=None, help="where runs live (default: the profile's out_dir)")
    if data_root:
        parser.add_argument("--data-root", default=None, help="folder holding the datasets (default: $TKD_DATA)")


def _add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --precision and --compile: how a run executes (`tkdlib.runtime.Runtime`), not what it computes."""
    group = parser.add_argument_group("runtime", "how the run executes; recorded in its environment, not part of its config hash")
    group.add_argument("--device", default="auto", help="auto (CUDA if available, else cpu), cpu, cuda or cuda:N (default: auto)")
    group.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="training autocast (default: the profile's precision for run, auto for prune): auto = bf16 on a CPU with native "
        "bf16 (AVX512-BF16 or AMX), else fp32; bf16 on CUDA (fp16 where bf16 is unsupported)",
    )
    group.add_argument("--compile", action="store_true", help="train through torch.compile")


def _runtime(args: argparse.Namespace) -> Runtime:
    """The runtime the flags ask for, resolved (a `ValueError` says what this machine cannot do)."""
    return Runtime(args.device, args.precision or "auto", args.compile).resolved()


def _prune(args: argparse.Namespace) -> int:
    """Validate the config (exit 2 with a one-line error), run it, print where its files are."""
    try:
        values = tomllib.loads(args.config.read_text()) if args.config else {}
        flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(Config)}
        config = Config.from_dict({**values, **{name: value for name, value in flags.items() if value is not None}})
        runtime = _runtime(args)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return _run_and_show(config, args.out_dir, args.data_root, runtime)


def _profile_and_runtime(args: argparse.Namespace) -> tuple[Profile, Runtime] | None:
    """The profile --profile names and the runtime its flags ask for; None, after a one-line error
    on stderr, when either is invalid."""
    try:
        profile = load_profile(args.profile)
        return profile, profile.runtime(args.device, args.precision, args.compile)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    """Select exactly one cell of a profile (exit 2 saying why not), run it, print where its files are."""
    loaded = _profile_and_runtime(args)
    if loaded is None:
        return 2
    profile, runtime = loaded
    out_dir = args.out_dir or profile.out_dir
    selected = cells(profile, out_dir, [args.only] if args.only else [])
    if len(selected) != 1:
        shown = "".join(f"\n  {cell.label()}" for cell in selected[:20])
        print(f"error: --only {args.only!r} selects {len(selected)} cells of {profile.name}; it must select exactly one{shown}", file=sys.stderr)
        return 2
    if args.dry_run:
        cell = selected[0]
        failure = None if cell.done else cell.failure
        status = "done" if cell.done else "todo" if failure is None else "failed"
        print(f"{status}  {cell.directory}  {cell.label()}" + ("" if failure is None else f"  ({failure}; running it tries again)"))
        return 0
    return _run_and_show(selected[0].config, out_dir, args.data_root, runtime)


def _run_and_show(config: Config, out_dir: str | Path, data_root: str | None, runtime: Runtime) -> int:
    """Run `config` (every process of a torchrun group together), then rank 0 prints where its files are."""
    from tkdlib.experiment import RECORD_NAME, run, run_dir

    with distributed(runtime):
        record = run(config, out_dir, data_root, progress=sys.stderr.isatty() and rank() == 0, runtime=runtime)
        if rank() != 0:
            return 0
    directory = run_dir(config, out_dir)
    print(f"run:    {directory}")
    print(f"record: {directory / RECORD_NAME}")
    print(f"mask:   {directory / 'mask.pt'} (sparsity {record['sparsity']['mask']:.4f}; per layer: python -m tkdlib report {directory / 'mask.pt'})")
    if (directory / "model.pt").is_file():
        print(f"model:  {directory / 'model.pt'} (the retrained student's state_dict)")
    print("top-1 test accuracy: " + ", ".join(f"{stage} {value:.4f}" for stage, value in record["accuracy"].items()))
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    """Train each shared checkpoint the selected cells need once, printing its path and sha256."""
    from tkdlib.checkpoints import CHECKPOINTS, checkpoint_path
    from tkdlib.shared_networks import shared_phases, train_shared

    loaded = _profile_and_runtime(args)
    if loaded is None:
        return 2
    profile, runtime = loaded
    out_dir = Path(args.out_dir or profile.out_dir)
    needed: dict[Path, tuple[Config, str]] = {}
    for config in profile.configs():
        if args.seed is None or config.seed == args.seed:
            for phase in shared_phases(config):
                if args.phase in (None, phase):
                    needed.setdefault(checkpoint_path(out_dir / CHECKPOINTS, config, phase), (config, phase))
    if not needed:
        selection = ([f"seed {args.seed}"] if args.seed is not None else []) + ([f"a {args.phase} checkpoint"] if args.phase else [])
        print(f"error: no cell of {profile.name} has {' and '.join(selection)}", file=sys.stderr)
        return 2
    for path, (config, phase) in needed.items():
        digests = train_shared(config, out_dir, (phase,), args.data_root, runtime, progress=sys.stderr.isatty())
        print(f"{phase:8s} {path}  sha256 {digests[phase]}")
    return 0


def _park(args: argparse.Namespace) -> int:
    """Park every unfinished cell with training states; print each with what it keeps and its file."""
    from tkdlib.parking import PARKED_NAME, park

    try:
        profile = load_profile(args.profile)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parked = [(cell, kept) for cell in cells(profile, args.out_dir, args.only) if not cell.done and (kept := park(cell.directory))]
    for cell, kept in parked:
        size = (cell.directory / PARKED_NAME).stat().st_size
        print(f"parked {cell.directory / PARKED_NAME} ({size / 1e6:.1f} MB)  {cell.label()}: {kept.describe()}")
    if not parked:
        print(f"no unfinished cell of {profile.name} has training states to park")
    return 0


def _compress(args: argparse.Namespace) -> int:
    """Convert a profile's uncompressed sparse students; print each with its sizes and the total."""
    from tkdlib.compress_sparse import compress_sparse_models

    try:
        profile = load_profile(args.profile)
        converted = compress_sparse_models(args.out_dir or profile.out_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for done in converted:
        print(f"{done.path}  {done.bytes_before:,} → {done.bytes_after:,} bytes")
    before, after = sum(done.bytes_before for done in converted), sum(done.bytes_after for done in converted)
    print(f"{len(converted)} sparse students of {profile.name} compressed: {before:,} → {after:,} bytes" if converted
          else f"every sparse student of {profile.name} is compressed already")
    return 0


def _report(args: argparse.Namespace) -> int:
    """Print a saved mask's densities (exit 2 with a one-line error if it cannot be read)."""
    try:
        mask = Mask.load(args.mask)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.mask}: {mask.summary()}")
    return 0


def _shard_argument(text: str) -> tuple[int, int]:
    """`parse_shard` for argparse: a malformed or out-of-range shard is a usage error."""
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tkdlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_prune_commands(commands)
    batch = commands.add_parser("batch", help="run a profile's grid with papermill, then its results notebook")
    _add_profile_arguments(batch)
    batch.add_argument(
        "--only", action="append", default=[], metavar="GLOB",
        help="run only cells whose label contains this glob, or the cell of this run hash; repeat it to run the cells any of the globs selects",
    )
    batch.add_argument(
        "--shard",
        type=_shard_argument,
        default=None,
        metavar="I/N",
        help="run only shard I of N (1 <= I <= N) of the selected cells, for job arrays: cell k of the stable order goes to shard k mod N + 1",
    )
    batch.add_argument(
        "--dry-run", action="store_true",
        help="list the cells (of the shard): done, failed (with the error) or todo",
    )
    batch.add_argument("--retry-failed", action="store_true", help="run again the cells whose record says they failed (skipped otherwise)")
    batch.add_argument(
        "--hours", type=float, default=None, metavar="H",
        help="start only the cells that the estimates from the finished cells say will end within H hours of the start (see --dry-run); list the others",
    )
    batch.add_argument(
        "--park", action="store_true",
        help="with --hours and --no-notebooks: start cells while hours are left, and when they are over stop the running cell "
        "and park it (python -m tkdlib park --help) for a later sitting to resume",
    )
    what_runs = batch.add_mutually_exclusive_group()
    what_runs.add_argument(
        "--no-notebooks", action="store_true", help="run the cells directly, without papermill or summary notebooks (same records)"
    )
    what_runs.add_argument(
        "--summaries-only",
        action="store_true",
        help="run no cell: only execute the summary notebooks over the finished records (how make book renders the cpu profile)",
    )
    batch.add_argument("--examples", action="store_true", help="also execute the example notebooks into the book, once (make book does)")
    args = parser.parse_args(argv)
    if args.command == "prune":
        return _prune(args)
    if args.command == "run":
        return _run(args)
    if args.command == "report":
        return _report(args)
    if args.command == "checkpoints":
        return _checkpoints(args)
    if args.command == "park":
        return _park(args)
    if args.command == "compress":
        return _compress(args)
    try:
        failures = run_batch(
            args.profile, args.out_dir, args.data_root, args.only, args.dry_run, shard_of=args.shard,
            notebooks=not args.no_notebooks, examples=args.examples, run_cells=not args.summaries_only, retry_failed=args.retry_failed,
            hours=args.hours, park_at_end=args.park,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
