"""Run records → one pandas row per finished run, and the selections every table, text and figure
starts from.

Accuracies are top-1 on the test split, in [0, 1]. Sparsity is the fraction of prunable weights
removed. A record belongs to the *main comparison* when its config differs from the profile's base
only in method, sparsity and seed; any other difference makes it a *variant* (an ablation), named
by its `variant` column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tkdlib.config import Config
from tkdlib.experiment import RECORD_NAME
from tkdlib.plan import own_seconds
from tkdlib.profile import Profile
from tkdlib.report.style import label


STAGES = ("teacher", "dense", "guided", "pruned", "pruned_bn", "retrained")  # pruned_bn: BatchNorm re-estimated (records since it existed)


OURS = "teacher_guided"


MAIN_ROW = "none (main comparison)"  # how `ablation_matrix` names the runs without switches


VARIANT_SEPARATOR = ", "  # between the switches of a `variant` name


DATASET_TITLES = {  # how readers know each of `tkdlib.data.DATASET_NAMES`
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tinyimagenet": "TinyImageNet-200", "cifar10-sample": "CIFAR-10 sample",
}


REFERENCE_SPEED = 1000.0  # images/s of `tkdlib.throughput.reference_rate`'s workload: the machine speed pruning seconds are scaled to


MASK_ONLY = frozenset({"retrain_epochs=0", "allow_layer_collapse=True"})  # switches of a mask-only cell of the main methods


def read_record(out_dir: str | Path, run: str) -> dict[str, Any]:
    """The record of run `run` (its config hash) under `out_dir`."""
    return json.loads((Path(out_dir) / run / RECORD_NAME).read_text())


def load_records(out_dir: str | Path, profile: Profile) -> pd.DataFrame:
    """One row per finished run under `out_dir`, with its `variant` relative to `profile`."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RECORD_NAME}")):
        record = json.loads(path.read_text())
        if record.get("status") == "finished":
            changes = profile.changes(Config.from_dict(record["config"]))
            rows.append({**_row(record), "variant": variant_name(changes)})
    if not rows:
        raise FileNotFoundError(f"No finished run records under {out_dir}; run `python -m tkdlib batch` first.")
    return pd.DataFrame(rows).sort_values(["variant", "method", "sparsity", "seed"], ignore_index=True)


def failed_runs(out_dir: str | Path, profile: Profile | None = None) -> pd.DataFrame:
    """Runs under `out_dir` whose record says they failed, with the error that stopped them; with
    `profile`, also their `variant` relative to it (as in `load_records`)."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RECORD_NAME}")):
        record = json.loads(path.read_text())
        if record.get("status") == "failed":
            config = record["config"]
            row = {"run": record["config_hash"], "method": config["method"], "sparsity": config["sparsity"], "seed": config["seed"]}
            if profile is not None:
                row["variant"] = variant_name(profile.changes(Config.from_dict(config)))
            rows.append({**row, "error": record["error"]})
    columns = ["run", "method", "sparsity", "seed", *(["variant"] if profile is not None else []), "error"]
    return pd.DataFrame(rows, columns=columns)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """The frame's row of one finished record. Besides the config and the accuracies: total and
    ``pruning_seconds`` (wall seconds of the phases the run trained or scored itself, not the
    shared teacher and dense student), ``reference_rate`` (the machine's speed in that sitting,
    images/s of `tkdlib.throughput.reference_rate`; NaN in records made before it) and
    ``scaled_pruning_seconds`` (the pruning seconds on a machine running that workload at
    `REFERENCE_SPEED`)."""
    config, compute = record["config"], record["compute"]
    settings = Config.from_dict(config)
    pruning_seconds = own_seconds(record)
    reference_rate = record["environment"].get("reference_rate", math.nan)
    return {
        "run": record["config_hash"],
        "dataset": config["dataset"],
        "arch": config["arch"],
        "teacher_arch": config["teacher_arch"],
        "method": config["method"],
        "sparsity": config["sparsity"],
        "achieved_sparsity": record["sparsity"]["weights"],
        "seed": config["seed"],
        # the saliency study's switches, as the run used them
        "retrain_epochs": settings.retrain_epochs,
        "score_batches": settings.score_batches,
        "normalize_logits": settings.normalize_logits,
        "score_temperature": settings.guiding_temperature,
        "retrain_normalize_logits": settings.retraining_normalizes,
        **{f"acc_{stage}": record["accuracy"].get(stage) for stage in STAGES},
        "gamma": record["gamma"],
        "total_flops": compute["total"]["flops"],
        "total_images": compute["total"]["student_backward"],
        "total_seconds": compute["total"]["seconds"],
        "pruning_seconds": pruning_seconds,
        "reference_rate": reference_rate,
        "scaled_pruning_seconds": pruning_seconds * reference_rate / REFERENCE_SPEED,
        "seconds": record["seconds"]["total"],
        "resumed": record["seconds"].get("resumed", False),  # records written before runs could resume lack it
        "data": record["data"]["train"],
        "device": record["environment"]["device"],
        "machine": record["environment"].get("cpu_model", ""),
        "finished_at": record.get("finished_at", ""),
        "precision": record["environment"].get("precision", "fp32"),  # records made before runtimes trained in fp32
        # sha256 of the shared checkpoints the run used (records made before they were committed name none)
        **{f"{phase}_sha256": record.get("checkpoints", {}).get("sha256", {}).get(phase) for phase in ("teacher", "dense")},
    }


def main_comparison(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["variant"] == ""]


def per_seed(records: pd.DataFrame, column: str) -> pd.Series:
    """One value per seed (indexed by seed, ascending) of a quantity every main-comparison run of
    that seed shares: its teacher's (``acc_teacher``) or dense student's (``acc_dense``) accuracy.
    Averaging the column over runs instead would weight each seed by how many of its runs finished.

    Raises ValueError when the runs of one seed are not one lineage: they name different sha256
    digests of their teacher or dense student (a checkpoint was lost and trained again), or, for
    records made before the digests were recorded, disagree on `column`."""
    main = main_comparison(records)
    for phase in ("teacher", "dense"):
        digests = main.groupby("seed")[f"{phase}_sha256"].nunique()
        if (digests > 1).any():
            seed = digests.idxmax()
            found = ", ".join(sorted(digest[:12] for digest in main.loc[main["seed"] == seed, f"{phase}_sha256"].dropna().unique()))
            raise ValueError(
                f"the main-comparison runs of seed {seed} used different {phase} checkpoints (sha256 {found}…): "
                "they are two lineages; compare within one, or give the new runs another seed or out_dir"
            )
    unrecorded = main[main["dense_sha256"].isna()].groupby("seed")[column]  # evaluated on other machines, maybe
    disagree = unrecorded.nunique() > 1
    if disagree.any():
        seed = disagree.idxmax()
        found = ", ".join(f"{value:.2%}" for value in sorted(unrecorded.get_group(seed).unique()))
        raise ValueError(
            f"the main-comparison runs of seed {seed} disagree on {column} ({found}): their shared checkpoint "
            "was retrained differently; rerun the runs of one of those checkpoints, or give the new runs another seed"
        )
    values = main.groupby("seed")[column]
    return values.first()


def comparison_sparsity(records: pd.DataFrame) -> float:
    """The sparsity at which the main comparison compares most: among the sparsities with the most
    finished methods, the highest. In a finished grid that is simply the highest sparsity; while a
    profile is partly run it is where most methods can be compared side by side."""
    main = main_comparison(records)
    if main.empty:
        raise ValueError("no finished run of the main comparison (all records are ablation variants)")
    methods = main.groupby("sparsity")["method"].nunique()
    return float(methods[methods == methods.max()].index.max())


def at_comparison_sparsity(records: pd.DataFrame) -> pd.DataFrame:
    main = main_comparison(records)
    return main[main["sparsity"] == comparison_sparsity(records)]


def records_at_comparison(out_dir: str | Path, records: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per method, the full record of its main-comparison run at the `comparison_sparsity` (the
    first seed where there are several), in the order of `records`."""
    top = at_comparison_sparsity(records).drop_duplicates("method")
    return {method: read_record(out_dir, run) for method, run in zip(top["method"], top["run"])}


def layers_at_comparison(out_dir: str | Path, records: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Per method label, the per-layer mask summary (name, shape, kept, total, density) of its run
    at the `comparison_sparsity` (first seed), in network order."""
    return {label(method): record["sparsity"]["layers"] for method, record in records_at_comparison(out_dir, records).items()}


def data_label(records: pd.DataFrame) -> str:
    """Which data the runs used, for captions and titles; says so when the pixels are the JPEG copy."""
    text = ", ".join(DATASET_TITLES.get(name, name) for name in sorted(records["dataset"].unique()))
    if records["data"].str.contains("JPEG").any():
        text += " (JPEG re-encoding of CIFAR-10: exact labels, lossy pixels)"
    return text


def variant_name(changes: dict[str, Any]) -> str:
    """How a variant is named in the `variant` column: its switches, ``key=value`` sorted by key."""
    return VARIANT_SEPARATOR.join(f"{key}={value}" for key, value in sorted(changes.items()))


def variant_switches(variant: str) -> frozenset[str]:
    """The switches (``key=value``) of a `variant` name that `variant_name` wrote."""
    return frozenset(variant.split(VARIANT_SEPARATOR))


def variant_cells(records: pd.DataFrame) -> Iterator[tuple[tuple[str, str, float], pd.DataFrame]]:
    """The ablation variants' records, one group per (variant, method, sparsity) with its runs
    (one per seed)."""
    return iter(records[records["variant"] != ""].groupby(["variant", "method", "sparsity"]))


def planned_methods(profile: Profile, sparsity: float) -> list[str]:
    """The methods `profile` runs in its main comparison at `sparsity` (fraction), in file order."""
    configs = [config for config in profile.configs() if not profile.changes(config) and math.isclose(config.sparsity, sparsity)]
    return list(dict.fromkeys(config.method for config in configs))


def with_switches(records: pd.DataFrame, allowed: Iterable[str]) -> pd.DataFrame:
    """The runs whose switches (``key=value`` of their `variant`) are all among `allowed`; the
    main comparison (no switch) included."""
    allowed = frozenset(allowed)
    keep = records["variant"].map(lambda variant: not variant or variant_switches(variant) <= allowed)
    return records[keep]


def mask_only(records: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """The mask-only runs (no retraining) whose other switches are among `extra`."""
    runs = with_switches(records, MASK_ONLY | frozenset(extra))
    return runs[runs["retrain_epochs"] == 0]


def retrained(records: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """The retrained runs whose switches are among `extra` (the main comparison when empty)."""
    runs = with_switches(records, frozenset(extra))
    return runs[runs["retrain_epochs"] > 0]
