"""Tables for the book's pages, from `tkdlib.report.records` frames: accuracy in percent with one
decimal, counts and FLOPs formatted for readers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tkdlib.report.records import MAIN_ROW, OURS, REFERENCE_SPEED, STAGES, VARIANT_SEPARATOR, read_record, at_comparison_sparsity, layers_at_comparison, main_comparison, records_at_comparison, variant_cells, variant_switches
from tkdlib.report.style import and_list, label, method_order, percent, seed_cell
from tkdlib.shared_networks import SHARED_PHASES


PAIRED_COLUMNS = ["accuracy", "reference", "change", "seeds"]  # a variant against its reference: `paired_accuracy`


def runs_table(records: pd.DataFrame) -> pd.DataFrame:
    """Every finished run, compactly, for the appendix: run id, method (its book name), target
    sparsity, seed, variant ("" for the main comparison), the accuracy (%) after each stage, the
    sparsity achieved on the weights (%) and the precision it trained in. Main comparison first,
    then by method, sparsity and seed."""
    table = records.assign(
        method=records["method"].map(label),
        order=records["method"].map(method_order),
        **{stage: records[f"acc_{stage}"] * 100 for stage in STAGES},
        achieved=records["achieved_sparsity"] * 100,
    )
    table = table.sort_values(["variant", "order", "sparsity", "seed"], kind="stable")
    columns = {stage: f"{stage} (%)" for stage in STAGES} | {"achieved": "achieved sparsity (%)"}
    return table[["run", "method", "sparsity", "seed", "variant", *columns, "precision"]].rename(columns=columns).set_index("run")


def results_table(records: pd.DataFrame, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Retrained accuracy (%) of the main comparison: mean ± std over seeds (std only with 2+ seeds);
    a cell whose run has not finished says "not run yet". `failed` (`failed_runs` with the
    profile) marks the cells where a main-comparison run failed, e.g. "67.1 (seed 1 failed)".
    Runs that differ from the main comparison only by a layer rule (`layer_rule`: a per-layer
    floor, or collapse allowed) get a column of their own beside their sparsity's, "—" where a
    method did not run with that rule. Rows: ours first, then the baselines in the order of
    `METHOD_LABELS`."""
    main = main_comparison(records)
    cells = main.groupby(["method", "sparsity"])["acc_retrained"].agg(seed_cell)
    if failed is not None and not failed.empty:
        failed_main = failed[failed["variant"] == ""].groupby(["method", "sparsity"])["seed"]
        notes = failed_main.agg(lambda seeds: f"seed{'s' if len(seeds) > 1 else ''} {and_list([str(s) for s in sorted(seeds)])} failed")
        both = cells.index.union(notes.index)
        cells, notes = cells.reindex(both), notes.reindex(both)
        cells = (cells + " (" + notes + ")").fillna(cells).fillna(notes)  # "67.1 (seed 1 failed)", or either alone
    table = cells.unstack("sparsity").fillna("not run yet")
    table.columns = pd.MultiIndex.from_tuples([(sparsity, "") for sparsity in table.columns], names=["sparsity", "rule"])
    ruled = records.assign(rule=records["variant"].map(layer_rule)).dropna(subset=["rule"])
    if not ruled.empty:
        by_rule = ruled.groupby(["method", "sparsity", "rule"])["acc_retrained"].agg(seed_cell).unstack(["sparsity", "rule"])
        table = table.join(by_rule, how="outer").fillna({column: "not run yet" for column in table.columns}).fillna("—")
        table = table[sorted(table.columns, key=lambda column: (column[0], column[1] != "", column[1]))]
    table = table.loc[sorted(table.index, key=method_order)]
    table.index = [label(name) for name in table.index]
    table.columns = [f"{percent(sparsity)} sparse" + (f", {rule}" if rule else "") for sparsity, rule in table.columns]
    return table


FLOOR_RULE = "per-layer floor"  # how `layer_rule` names the runs with a per-layer floor
FLOOR_SWITCH = "layer_floor="
COLLAPSE_SWITCH = "allow_layer_collapse=True"


def layer_rule(variant: str) -> str | None:
    """The column name of a variant that changes only the layer rule: ``layer_floor=0.005`` (the
    fraction of each layer's weights kept at least) → "per-layer floor 0.5 %",
    ``allow_layer_collapse=True`` → "collapse allowed"; None for any other variant and for the
    main comparison."""
    if VARIANT_SEPARATOR in variant:
        return None
    if variant.startswith(FLOOR_SWITCH):
        return f"{FLOOR_RULE} {float(variant.removeprefix(FLOOR_SWITCH)) * 100:g} %"
    return "collapse allowed" if variant == COLLAPSE_SWITCH else None


def rule_of(variant: str) -> str | None:
    """The layer rule a variant's runs are compared under: ``""`` for the main comparison (no
    switch), `layer_rule`'s name for a variant that changes only the layer rule, None otherwise."""
    return "" if variant == "" else layer_rule(variant)


def runs_by_layer_rule(records: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """The runs under each layer rule (`rule_of`), in the order comparisons prefer them: the main
    comparison (rule ""), then each per-layer floor, then any other rule ("collapse allowed")."""
    rules = records["variant"].map(rule_of)
    for rule in sorted(set(rules.dropna()) | {""}, key=lambda rule: (rule != "", not rule.startswith(FLOOR_RULE), rule)):
        yield rule, records[rules == rule]


def ablation_table(records: pd.DataFrame) -> pd.DataFrame:
    """Each variant beside the main-comparison runs of the same method, sparsity and seeds:
    retrained accuracy (%) of both, averaged over the seeds both ran, their difference
    (percentage points) and that number of `seeds`. Pairing seeds compares runs that share their
    teacher and dense student, so a variant run on one seed is not measured against an average
    over seeds it did not run. `reference` and `change` are NaN where no such run has finished (it
    failed, or has not run yet); `accuracy` then averages every seed of the variant."""
    main = main_comparison(records)
    rows = [
        {"variant": variant, "method": label(method), "sparsity": sparsity, **paired_accuracy(runs, main[(main["method"] == method) & (main["sparsity"] == sparsity)])}
        for (variant, method, sparsity), runs in variant_cells(records)
    ]
    return pd.DataFrame(rows, columns=["variant", "method", "sparsity", *PAIRED_COLUMNS]).set_index("variant")


def paired_accuracy(runs: pd.DataFrame, reference_runs: pd.DataFrame) -> dict[str, Any]:
    """`runs` against `reference_runs` (records of one method at one sparsity, at most one per
    seed) over the seeds both have: mean retrained accuracy (%) of each, their difference
    (percentage points) and the number of those seeds. Where they share no seed, `accuracy` is
    the mean over all of `runs`' seeds and `reference` and `change` are NaN."""
    accuracy = runs.set_index("seed")["acc_retrained"] * 100
    reference = reference_runs.set_index("seed")["acc_retrained"] * 100
    shared = accuracy.index.intersection(reference.index)
    if shared.empty:
        return {"accuracy": round(accuracy.mean(), 2), "reference": math.nan, "change": math.nan, "seeds": len(accuracy)}
    mean, reference_mean = accuracy[shared].mean(), reference[shared].mean()
    return {"accuracy": round(mean, 2), "reference": round(reference_mean, 2), "change": round(mean - reference_mean, 2), "seeds": len(shared)}


def ablation_changes(records: pd.DataFrame) -> pd.DataFrame:
    """One row per ablation variant and seed whose main-comparison run of the same method,
    sparsity and seed has finished: ``variant``, ``method``, ``sparsity``, ``seed`` and ``change``
    (retrained accuracy of the variant minus that of the main run, percentage points)."""
    main = main_comparison(records).set_index(["method", "sparsity", "seed"])["acc_retrained"]
    rows = [
        {"variant": variant, "method": method, "sparsity": sparsity, "seed": run.seed, "change": (run.acc_retrained - main[(method, sparsity, run.seed)]) * 100}
        for (variant, method, sparsity), runs in variant_cells(records)
        for run in runs.itertuples()
        if (method, sparsity, run.seed) in main.index
    ]
    return pd.DataFrame(rows, columns=["variant", "method", "sparsity", "seed", "change"])


def ablation_matrix(records: pd.DataFrame) -> pd.DataFrame:
    """Retrained accuracy (%) of each method under each variant, beside its main-comparison run:
    rows (sparsity, variant, seeds), the main comparison first as ``"none (main comparison)"``;
    one column per method that some variant ran, at the sparsities where one did; NaN where a
    method did not run under that variant. Each row averages the seeds that all of its methods
    ran (``seeds``: "0, 2"), so reading across a row compares masks under the same switches and
    the same teachers and dense students (e.g. every method retrained with CE only); where its
    methods share no seed, each averages its own and ``seeds`` says "none shared"."""
    varied = records[records["variant"] != ""]
    if varied.empty:
        return pd.DataFrame()
    shown = records[records["method"].isin(varied["method"]) & records["sparsity"].isin(varied["sparsity"])]
    shown = shown.assign(variant=shown["variant"].replace("", MAIN_ROW))
    rows = []
    for (sparsity, variant), row in shown.groupby(["sparsity", "variant"]):
        shared = set.intersection(*(set(seeds) for seeds in row.groupby("method")["seed"].unique()))
        used = row[row["seed"].isin(shared)] if shared else row
        seeds = ", ".join(str(seed) for seed in sorted(shared)) if shared else "none shared"
        rows.append({"sparsity": sparsity, "variant": variant, "seeds": seeds, **(used.groupby("method")["acc_retrained"].mean() * 100)})
    table = pd.DataFrame(rows).set_index(["sparsity", "variant", "seeds"])
    order = sorted(table.index, key=lambda key: (key[0], key[1] != MAIN_ROW, key[1]))
    columns = sorted(table.columns, key=method_order)
    return table.loc[order, columns].round(2).rename(columns=label).rename_axis(columns=None)


def switch_effects(records: pd.DataFrame) -> pd.DataFrame:
    """Each switch of a variant that sets several, measured on its own: the variant against the
    finished variant of the same method and sparsity that sets all its other switches but not this
    one (retrained accuracy in %, averaged over the seeds both ran, as in `ablation_table`;
    `change` in percentage points). This splits a combined ablation into its parts, e.g.
    ``normalize_logits=False, retrain_with_kd=False`` against ``retrain_with_kd=False`` is the
    effect of the normalization with CE retraining. One row per (variant, switch) pair whose
    partner shares a seed with it; empty when none has."""
    by_switches = {
        (variant_switches(variant), method, sparsity): runs
        for (variant, method, sparsity), runs in variant_cells(records)
    }
    rows = []
    for (switches, method, sparsity), runs in by_switches.items():
        if len(switches) < 2:
            continue
        for switch in sorted(switches):
            partner = by_switches.get((switches - {switch}, method, sparsity))
            if partner is None:
                continue
            paired = paired_accuracy(runs, partner)
            if not math.isnan(paired["change"]):
                rows.append({"switch": switch, "alongside": VARIANT_SEPARATOR.join(sorted(switches - {switch})), "method": label(method), "sparsity": sparsity, **paired})
    return pd.DataFrame(rows, columns=["switch", "alongside", "method", "sparsity", *PAIRED_COLUMNS])


def efficiency_table(records: pd.DataFrame) -> pd.DataFrame:
    """Cost each method pays at the `comparison_sparsity`, in its run of the first seed: images
    through the student backward, estimated FLOPs, accuracy, ratios to ours, and the wall seconds
    of the phases the run trained or scored itself (the shared teacher and dense student left
    out), as measured and scaled to one machine speed (`load_records`: ``scaled_pruning_seconds``;
    "—" where the record predates the machine's measurement). Runs of one seed finish in different
    sittings, on machines of one name that differ up to 2× in speed: only the scaled seconds
    compare across them."""
    top = at_comparison_sparsity(records)
    top = top[top["seed"] == top["seed"].min()]
    columns = ["total_images", "total_flops", "acc_retrained", "pruning_seconds", "reference_rate", "scaled_pruning_seconds"]
    table = top.groupby("method")[columns].mean()
    if OURS in table.index:
        table[["images vs ours", "FLOPs vs ours"]] = cost_over_ours(table).round(2).to_numpy()
    table["acc_retrained"] = (table["acc_retrained"] * 100).round(2)
    table[["pruning_seconds", "scaled_pruning_seconds"]] = table[["pruning_seconds", "scaled_pruning_seconds"]].round(0)
    table = table.loc[sorted(table.index, key=method_order)]
    table.index = [label(name) for name in table.index]
    return table.rename(columns={
        "total_images": "images (backward)", "total_flops": "FLOPs", "acc_retrained": "accuracy (%)", "pruning_seconds": "pruning seconds",
        "reference_rate": "machine speed (images/s)", "scaled_pruning_seconds": f"pruning seconds at {REFERENCE_SPEED:,.0f} images/s",
    })


def cost_over_ours(by_method: pd.DataFrame) -> pd.DataFrame:
    """Each method's ``total_images`` and ``total_flops`` (columns of `by_method`, one row per
    method, ours among them) divided by ours'."""
    costs = by_method[["total_images", "total_flops"]]
    return costs / costs.loc[OURS]


def phase_costs(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """Per method (main comparison at the `comparison_sparsity`, first seed, methods in book
    order) and phase it pays for (in the order it ran): wall seconds, FLOPs, images forward and
    backward through the network the phase trains or scores, images through the frozen teacher."""
    rows = []
    for method, record in sorted(records_at_comparison(out_dir, records).items(), key=lambda item: method_order(item[0])):
        compute = record["compute"]
        for phase in compute["counted"]:
            rows.append({"method": label(method), "phase": phase, **compute["phases"][phase]})
    return pd.DataFrame(rows).set_index(["method", "phase"]).round({"seconds": 1}).rename(columns=PHASE_COST_COLUMNS)[list(PHASE_COST_COLUMNS.values())]


PHASE_COST_COLUMNS = {  # a record's ledger entry → the column the book shows, in this order; "student" in the ledger is the network the phase trains or scores
    "seconds": "seconds", "flops": "FLOPs", "student_forward": "images forward",
    "student_backward": "images backward", "teacher_forward": "images through the frozen teacher",
}


SHARED_CHECKPOINT_COLUMNS = {phase: f"{phase}_sha256" for phase in SHARED_PHASES}  # the records' column naming each shared checkpoint
PHASE_ORDER = ["teacher", "dense", "calibrate", "guide", "score", "retrain"]  # as a run meets them


def phase_times(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """Where, when and how long every phase ran, from the run records: one row per phase,
    machine (CPU model) and precision, with the number of times it ran, the median, lowest and
    highest wall seconds, the median speed the machine measured in the sittings that ran it
    (``reference_rate``, images/s; "—" for the shared phases, which ran in sittings of their own,
    and for records made before the measurement), and the first and last date a run holding it
    finished. A shared teacher or dense student counts once per checkpoint: its sha256, or, in
    records made before digests were recorded, its seed and the seconds its training took (every
    run using it copies them)."""
    rows = []
    for run in records.itertuples():
        compute = read_record(out_dir, run.run)["compute"]
        for phase in compute["counted"]:
            seconds = compute["phases"][phase]["seconds"]
            digest = getattr(run, SHARED_CHECKPOINT_COLUMNS[phase]) if phase in SHARED_CHECKPOINT_COLUMNS else None
            checkpoint = digest if isinstance(digest, str) else (f"seed {run.seed}, {seconds} s" if phase in SHARED_PHASES else run.run)
            rows.append({"phase": phase, "machine": run.machine or "not recorded", "precision": run.precision, "checkpoint": checkpoint,
                         "seconds": seconds, "speed": math.nan if phase in SHARED_PHASES else run.reference_rate, "date": str(run.finished_at)[:10]})
    frame = pd.DataFrame(rows).drop_duplicates(["phase", "checkpoint"])
    frame = frame.sort_values("phase", key=lambda phase: phase.map(PHASE_ORDER.index), kind="stable")
    grouped = frame.groupby(["phase", "machine", "precision"], sort=False)
    table = grouped["seconds"].agg(times="count", median="median", lowest="min", highest="max")
    table["machine speed (images/s)"] = grouped["speed"].median()
    table[["first", "last"]] = grouped["date"].agg(["min", "max"]).to_numpy()
    return table.rename(columns={"median": "median (s)", "lowest": "lowest (s)", "highest": "highest (s)"})


def thinnest_layers(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """Per method at the `comparison_sparsity` (first seed): the prunable layer it keeps the
    smallest fraction of, with weights kept / total and that density in percent. A layer kept at a
    few weights passes little more than what its residual connection carries around it."""
    rows = []
    for method, layers in layers_at_comparison(out_dir, records).items():
        thinnest = min(layers, key=lambda layer: layer["density"])
        rows.append({"method": method, "thinnest layer": thinnest["name"].removesuffix(".weight"),
                     "kept": thinnest["kept"], "of": thinnest["total"], "density (%)": round(thinnest["density"] * 100, 2)})
    return pd.DataFrame(rows).set_index("method").sort_values("density (%)")


def run_summary(record: dict[str, Any]) -> pd.DataFrame:
    """Test accuracy (%) after each stage of one run."""
    rows = [{"stage": stage, "accuracy (%)": round(record["accuracy"][stage] * 100, 2)} for stage in STAGES if stage in record["accuracy"]]
    return pd.DataFrame(rows).set_index("stage")


def compute_summary(record: dict[str, Any]) -> pd.DataFrame:
    """Per phase of one run: seconds, images through student and teacher, FLOPs, and whether the
    method pays for it (shared phases carry the cost of the checkpoint's training)."""
    compute = record["compute"]
    frame = pd.DataFrame(compute["phases"]).T
    frame["counted"] = [name in compute["counted"] for name in frame.index]
    return frame


def _benchmark_results(path: str | Path) -> dict[str, Any]:
    """The content of a ``benchmarks/results.json`` written by ``benchmarks/run_all.py``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `make bench` (benchmarks/run_all.py) first")
    return json.loads(path.read_text())


def benchmark_table(path: str | Path = "benchmarks/results.json") -> pd.DataFrame:
    """One row per benchmark of ``benchmarks/results.json``: what its figure measures (a ratio,
    unitless), the figure, its goal (≤ or ≥), whether it is met, and the benchmark's wall seconds."""
    rows = []
    for name, result in _benchmark_results(path)["benchmarks"].items():
        measures = result["lines"][-1].rsplit(":", 1)[0] if result["figure"] is not None else "(failed)"
        rows.append({
            "benchmark": name,
            "measures": measures,
            "figure": result["figure"],
            "goal": f"{'≥' if result['goal_is'] == 'at least' else '≤'} {result['goal']:g}",
            "met": "yes" if result["met"] else ("no" if "error" not in result else f"failed: {result['error']}"),
            "seconds": result["seconds"],
        })
    return pd.DataFrame(rows).set_index("benchmark")


def benchmark_machine(path: str | Path = "benchmarks/results.json") -> pd.Series:
    """The machine the benchmarks of ``benchmarks/results.json`` ran on: CPU, cores, torch,
    device, date, load averages (1, 5, 15 min) before and after, and the note left with them."""
    machine = _benchmark_results(path)["machine"]
    flat = {key: ", ".join(map(str, value)) if isinstance(value, list) else value for key, value in machine.items()}
    return pd.Series(flat, name="value")
