"""What the runs of a profile share: their data (`RunData`) and their teacher and dense students
(`SharedNetworks`), trained once, kept as committed checkpoints and checked against their sha256
before use (`tkdlib.checkpoints`). `train_shared` trains them alone, so a sitting can be given to
the longest phase; `tkdlib.experiment.run` trains whatever a run needs that is missing.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tkdlib import data as datasets
from tkdlib.checkpoints import CHECKPOINTS, checkpoint_path, record_sha256, round_to_storage, stored_state, verified_sha256
from tkdlib.compute import ComputeMeter, PhaseCost, forward_flops
from tkdlib.config import PRUNED_FIELDS, SELF_TEACHER, Config
from tkdlib.io import load_checkpoint
from tkdlib.loaders import TensorLoader
from tkdlib.models import build_model
from tkdlib.runtime import Runtime, rank, save_shared, tune_for, world_size
from tkdlib.train import Batches, EpochState, Schedule, fit

__all__ = ["RunData", "SHARED_PHASES", "SharedNetworks", "check_writable", "train_shared"]


class RunData:
    """The run's data, on the runtime's device: augmented training batches seeded per phase name
    (each rank gets its slice of every batch) and whole test batches (every rank evaluates all)."""

    def __init__(self, config: Config, data_root: str | Path | None, runtime: Runtime) -> None:
        train = datasets.load_dataset(config.dataset, "train", data_root)
        if config.train_subset is not None:
            train = dataclasses.replace(train, images=train.images[: config.train_subset], labels=train.labels[: config.train_subset])
        full_batches = len(train) // config.batch_size  # augmented training epochs drop the last, partial batch
        if config.score_batches > full_batches:
            raise ValueError(
                f"score_batches={config.score_batches}, but an epoch of {len(train):,} training images at batch size "
                f"{config.batch_size} has {full_batches} full batches: score on at most {full_batches}"
            )
        self.train = train
        self.test = datasets.load_dataset(config.dataset, "test", data_root)
        self.config = config
        self.device = runtime.torch_device
        self.spec = datasets.dataset_spec(config.dataset)
        self.mean, self.std = self.spec.mean, self.spec.std
        self.input_shape = (3, *train.images.shape[1:3])

    def _loader(self, arrays: datasets.ImageArrays, name: str, run_seed: int | None = None) -> TensorLoader:
        seed = (self.config.seed if run_seed is None else run_seed) * 1_000_003 + zlib.crc32(name.encode())
        return TensorLoader(
            arrays, self.config.batch_size, self.mean, self.std, train=True, seed=seed, pad=self.spec.pad, **self._placement()
        )

    def _placement(self) -> dict[str, Any]:
        """Where a sharded loader's batches go: this rank's device and slice."""
        return {"device": self.device, "rank": rank(), "world_size": world_size()}

    def shuffled(self, name: str, run_seed: int | None = None) -> Batches:
        """Augmented training batches whose seed depends on the phase `name` and the run's seed
        only (`run_seed`, default the config's), so loading a checkpoint instead of training it
        does not change the batches of later phases."""
        return self._loader(self.train, name, run_seed)

    def halves(self, name: str) -> tuple[Batches, Batches]:
        """Augmented batches of the first and the second half of the training set."""
        middle = len(self.train) // 2
        first = dataclasses.replace(self.train, images=self.train.images[:middle], labels=self.train.labels[:middle])
        second = dataclasses.replace(self.train, images=self.train.images[middle:], labels=self.train.labels[middle:])
        return self._loader(first, f"{name}/1"), self._loader(second, f"{name}/2")

    def plain_train(self) -> Batches:
        return TensorLoader(self.train, self.config.batch_size, self.mean, self.std, train=False, **self._placement())

    def test_batches(self) -> Batches:
        return TensorLoader(self.test, 256, self.mean, self.std, train=False, device=self.device)


class SharedNetworks:
    """Shared checkpoints in ``<out_dir>/checkpoints``: the trained teacher and dense student
    (state, training cost and history) and the dense student's snapshots at the epochs runs rewind
    to, each checked against its sha256 before use (`tkdlib.checkpoints`). Rank 0 writes them;
    every rank reads them. `digests` collects the sha256 of each checkpoint used, by name."""

    def __init__(self, folder: Path, config: Config, data: RunData, runtime: Runtime, progress: bool) -> None:
        self.folder, self.config, self.data, self.runtime, self.progress = folder, config, data, runtime, progress
        self.student_path = checkpoint_path(folder, config, "dense")
        self.snapshots = tuple(sorted({0, config.rewind_epoch}))  # the initialization and the rewind point
        self.digests: dict[str, str] = {}

    def build(self, arch: str, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return self.runtime.prepare(build_model(arch, self.data.train.num_classes))

    def teacher(self) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        path = checkpoint_path(self.folder, self.config, "teacher")
        seed = self.config.teacher_config.seed
        return self._trained("teacher", path, self.config.teacher_arch, seed, self.config.teacher_epochs, data_seed=seed)

    def student(self) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        return self._trained("dense", self.student_path, self.config.arch, self.config.seed + 1, self.config.student_epochs, self.snapshots)

    def pruned_path(self) -> Path:
        """Where the guided, scored and masked student of this config is kept (one-shot methods)."""
        return self.folder / f"pruned-{self.config.key(PRUNED_FIELDS)}.pt"

    def snapshot_path(self, epoch: int) -> Path:
        return self.student_path.with_name(f"{self.student_path.stem}-epoch{epoch}.pt")

    def dense_state(self, epoch: int) -> dict[str, torch.Tensor]:
        """The dense student's state after `epoch` epochs of its training (0 = initialization);
        a snapshot not kept is recomputed by training those `epoch` epochs again (deterministic on
        one machine)."""
        if epoch == self.config.student_epochs:
            return self.student()[0].state_dict()
        path = self.snapshot_path(epoch)
        if not path.is_file():
            self._train(self.config.arch, self.config.seed + 1, "dense", self.config.student_epochs, (epoch,), stop_after=epoch)
        self.digests[f"dense_epoch{epoch}"] = verified_sha256(path)
        return load_checkpoint(path)

    def _trained(
        self, phase: str, path: Path, arch: str, seed: int, epochs: int, snapshots: tuple[int, ...] = (),
        data_seed: int | None = None,
    ) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        """The `phase` checkpoint at `path`, verified against its sha256, or trained now (resuming
        from its per-epoch state, ``<name>.partial.pt``) and saved with its digest."""
        saved = None
        if path.is_file():
            self.digests[phase] = verified_sha256(path)
            saved = load_checkpoint(path)  # None, with a warning, when the file does not load: trained again below
        if saved is not None:
            model = self.build(arch, seed)
            model.load_state_dict(saved["state_dict"])
            return model, PhaseCost(**saved["cost"]), saved["history"]
        partial = path.with_name(f"{path.stem}.partial.pt")
        model, cost, history = self._train(arch, seed, phase, epochs, snapshots, partial, data_seed)
        state = round_to_storage(model, self.config.storage_precision)
        save_shared(path, {"state_dict": state, "cost": dataclasses.asdict(cost), "history": history})
        if rank() == 0:
            self.digests[phase] = record_sha256(path)
            partial.unlink(missing_ok=True)
        return model, cost, history

    def _train(
        self, arch: str, seed: int, phase: str, epochs: int, snapshots: tuple[int, ...], partial: Path | None = None,
        data_seed: int | None = None, stop_after: int | None = None,
    ) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        """Train `arch` from initialization `seed` on batches drawn with `data_seed` (default the
        config's seed) for `epochs` (or the first `stop_after` of them), saving the dense snapshots
        at the `snapshots` epochs (with their digests); with `partial`, keep the whole training
        state there after every epoch and resume from it, so a killed training loses one epoch at most."""
        model = self.build(arch, seed)

        def save_snapshot(epoch: int, trained: nn.Module) -> None:
            path = self.snapshot_path(epoch)
            save_shared(path, stored_state(trained.state_dict(), self.config.storage_precision))
            if rank() == 0:
                record_sha256(path)

        def after_epoch(entry: dict[str, Any], trained: nn.Module) -> None:
            if entry["epoch"] in snapshots:
                save_snapshot(entry["epoch"], trained)

        if 0 in snapshots:
            save_snapshot(0, model)
        meter = ComputeMeter(forward_flops(model, self.data.input_shape), processes=world_size())
        meter.watch(model)
        schedule = Schedule(epochs, self.config.lr, weight_decay=self.config.weight_decay, stop_after=stop_after)
        epoch_state = EpochState.metered(partial, meter) if partial else None
        with meter.phase(phase) as cost:
            history = fit(
                model, self.data.shuffled(phase, data_seed), schedule, phase=phase, progress=self.progress, on_epoch_end=after_epoch,
                runtime=self.runtime, epoch_state=epoch_state,
            )
        meter.remove()
        return model, cost, history


def check_writable(directory: Path) -> None:
    """Make the run's folder, or say clearly why it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"Cannot write run records to {directory} ({error.strerror}); choose a writable out_dir.") from error



SHARED_PHASES = ("dense", "teacher")  # the checkpoints many runs share, in the order a run trains them


def shared_phases(config: Config) -> tuple[str, ...]:
    """The shared checkpoints `config`'s run needs, in `SHARED_PHASES` order: ``dense``, then
    ``teacher`` unless the teacher is a frozen copy of the dense student itself."""
    return tuple(phase for phase in SHARED_PHASES if phase == "dense" or config.teacher_arch != SELF_TEACHER)


def train_shared(
    config: Config, out_dir: str | Path, phases: tuple[str, ...] = SHARED_PHASES, data_root: str | Path | None = None,
    runtime: Runtime | None = None, progress: bool = False,
) -> dict[str, str]:
    """Train the shared checkpoints of `config` named in `phases` (``dense``, ``teacher``) that
    are not yet in ``<out_dir>/checkpoints`` (verify those that are), exactly as `run` would,
    without running the rest of the experiment: a sitting can be given to a long phase alone.
    Returns checkpoint name → sha256 (the dense student's snapshots included)."""
    needed = shared_phases(config)
    if not set(phases) <= set(needed):
        raise ValueError(f"phases must be among {needed} for teacher_arch {config.teacher_arch!r}, got {phases}")
    runtime = (runtime or Runtime()).resolved()
    tune_for(runtime)
    folder = Path(out_dir) / CHECKPOINTS
    checkpoints = SharedNetworks(folder, config, RunData(config, data_root, runtime), runtime, progress)
    if rank() == 0:
        check_writable(folder)
    for phase in SHARED_PHASES:
        if phase in phases:
            (checkpoints.student if phase == "dense" else checkpoints.teacher)()
    return checkpoints.digests
