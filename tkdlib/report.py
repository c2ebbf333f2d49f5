"""Run records → pandas tables and seaborn plots for the book.

Accuracies are top-1 on the test split, in [0, 1] in the frames and in percent in the tables.
Sparsity is the fraction of prunable weights removed. A record belongs to the *main comparison*
when its config differs from the profile's base only in method, sparsity and seed; any other
difference makes it a *variant* (an ablation), named by its `variant` column.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tkdlib.config import Config
from tkdlib.experiment import RECORD_NAME
from tkdlib.profile import Profile

METHOD_LABELS = {
    "teacher_guided": "teacher-guided (ours)",
    "ce_gradient": "CE gradient (no teacher)",
    "magnitude": "magnitude",
    "random": "random",
    "snip": "SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "imp": "IMP (iterative, rewinding)",
    "colt": "COLT (our re-implementation)",
    "epsd": "EPSD (our re-implementation)",
}
STAGES = ("teacher", "dense", "guided", "pruned", "retrained")
OURS = "teacher_guided"
MAIN_ROW = "none (main comparison)"  # how `ablation_matrix` names the runs without switches
VARIANT_SEPARATOR = ", "  # between the switches of a `variant` name
PAIRED_COLUMNS = ["accuracy", "reference", "change", "seeds"]  # a variant against its reference: `_paired_accuracy`


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _method_order(method: str) -> tuple[int, str]:
    """Sort key: the order of `METHOD_LABELS`, unknown methods after them by name."""
    order = list(METHOD_LABELS)
    return (order.index(method) if method in order else len(order), method)


def _read_record(out_dir: str | Path, run: str) -> dict[str, Any]:
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
    config, compute = record["config"], record["compute"]
    return {
        "run": record["config_hash"],
        "dataset": config["dataset"],
        "arch": config["arch"],
        "teacher_arch": config["teacher_arch"],
        "method": config["method"],
        "sparsity": config["sparsity"],
        "achieved_sparsity": record["sparsity"]["weights"],
        "seed": config["seed"],
        **{f"acc_{stage}": record["accuracy"].get(stage) for stage in STAGES},
        "gamma": record["gamma"],
        "total_flops": compute["total"]["flops"],
        "total_images": compute["total"]["student_backward"],
        "total_seconds": compute["total"]["seconds"],
        "seconds": record["seconds"]["total"],
        "resumed": record["seconds"].get("resumed", False),  # records written before runs could resume lack it
        "data": record["data"]["train"],
        "device": record["environment"]["device"],
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


def _at_comparison_sparsity(records: pd.DataFrame) -> pd.DataFrame:
    main = main_comparison(records)
    return main[main["sparsity"] == comparison_sparsity(records)]


def _records_at_comparison(out_dir: str | Path, records: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per method, the full record of its main-comparison run at the `comparison_sparsity` (the
    first seed where there are several), in the order of `records`."""
    top = _at_comparison_sparsity(records).drop_duplicates("method")
    return {method: _read_record(out_dir, run) for method, run in zip(top["method"], top["run"])}


def data_label(records: pd.DataFrame) -> str:
    """Which data the runs used, for captions and titles; says so when the pixels are the JPEG copy."""
    text = ", ".join(sorted(records["dataset"].unique()))
    if records["data"].str.contains("JPEG").any():
        text += " (JPEG re-encoding of CIFAR-10: exact labels, lossy pixels)"
    return text


def results_table(records: pd.DataFrame, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Retrained accuracy (%) of the main comparison: mean ± std over seeds (std only with 2+ seeds);
    a cell whose run has not finished says "not run yet". `failed` (`failed_runs` with the
    profile) marks the cells where a main-comparison run failed, e.g. "67.09 (seed 1 failed)".
    Rows: ours first, then the baselines in the order of `METHOD_LABELS`."""
    main = main_comparison(records)
    grouped = main.groupby(["method", "sparsity"])["acc_retrained"]
    mean, std, count = grouped.mean() * 100, grouped.std() * 100, grouped.count()
    cells = mean.map("{:.2f}".format) + [f" ± {s:.2f}" if n > 1 else "" for s, n in zip(std, count)]
    if failed is not None and not failed.empty:
        failed_main = failed[failed["variant"] == ""].groupby(["method", "sparsity"])["seed"]
        notes = failed_main.agg(lambda seeds: f"seed{'s' if len(seeds) > 1 else ''} {_and_list([str(s) for s in sorted(seeds)])} failed")
        both = cells.index.union(notes.index)
        cells, notes = cells.reindex(both), notes.reindex(both)
        cells = (cells + " (" + notes + ")").fillna(cells).fillna(notes)  # "67.09 (seed 1 failed)", or either alone
    table = cells.unstack("sparsity").fillna("not run yet")
    table = table.loc[sorted(table.index, key=_method_order)]
    table.index = [label(name) for name in table.index]
    table.columns = [f"{s:.0%} sparse" for s in table.columns]
    return table


def by_sparsity_text(records: pd.DataFrame, failed: pd.DataFrame | None = None) -> str:
    """The main comparison in words, one sentence per sparsity (plain text): the most accurate
    method there (retrained accuracy, seeds averaged) and where teacher-guided pruning ranks and
    by how many percentage points it trails or leads, or that its run failed there (`failed`:
    `failed_runs` with the profile) or has not finished. Where the methods there ran different
    numbers of seeds, each quoted accuracy says how many it averages."""
    grouped = main_comparison(records).groupby(["sparsity", "method"])
    accuracy, seeds = grouped["acc_retrained"].mean() * 100, grouped["seed"].nunique()
    failed_ours = set() if failed is None else set(failed.loc[(failed["variant"] == "") & (failed["method"] == OURS), "sparsity"])
    sentences = []
    for sparsity, by_method in accuracy.groupby(level="sparsity"):
        ranked = by_method.droplevel("sparsity").sort_values(ascending=False)
        seeds_here = seeds.loc[sparsity]
        quoted = partial(_quoted, ranked, seeds_here if seeds_here.nunique() > 1 else None)
        leaders = [method for method in ranked.index if ranked[method] == ranked.iloc[0]]
        best = next((method for method in leaders if method != OURS), OURS)  # ours leads only alone
        at = f"At {sparsity * 100:.0f} % sparsity"
        if len(ranked) == 1:
            text = f"{at}, only {label(best)} has finished ({quoted(best)})"
        else:
            text = f"{at}, {label(best)} is the most accurate of the {len(ranked)} methods finished ({quoted(best)})"
        if best == OURS:
            if len(ranked) > 1:
                text += f", {_points(ranked.iloc[0] - ranked.iloc[1])} points ahead of {label(ranked.index[1])}"
        elif OURS in ranked and ranked[OURS] == ranked[best]:
            text += "; teacher-guided pruning ties it"
        elif OURS in ranked:
            text += f"; teacher-guided pruning ranks {_rank(ranked, OURS)} with {quoted(OURS)}, {_points(ranked[best] - ranked[OURS])} points behind"
        else:
            text += f"; teacher-guided pruning {'failed' if sparsity in failed_ours else 'has not finished'} there"
        sentences.append(text + ".")
    return " ".join(sentences)


def _quoted(accuracy: pd.Series, seeds: pd.Series | None, method: str) -> str:
    """`method`'s accuracy (%) from `accuracy`, followed by how many seeds it averages where
    `seeds` (seed count per method) is given."""
    text = f"{accuracy[method]:.1f} %"
    if seeds is None:
        return text
    count = int(seeds[method])
    return f"{text} over {count} seeds" if count > 1 else f"{text} on 1 seed"


def _rank(accuracy: pd.Series, method: str) -> int:
    """`method`'s place (1 = most accurate) in `accuracy` (one value per method)."""
    return int((accuracy > accuracy[method]).sum()) + 1


def _points(gap: float) -> str:
    """A gap in percentage points to one decimal, or to two where one would round it to 0.0."""
    return f"{gap:.1f}" if gap >= 0.05 else f"{gap:.2f}"


def accuracy_vs_sparsity(records: pd.DataFrame) -> plt.Figure:
    """Retrained test accuracy against sparsity, one line per method (mean over seeds, band =
    spread), the dense student dashed."""
    main = main_comparison(records)
    data = main.assign(method=main["method"].map(label), accuracy=main["acc_retrained"] * 100)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=data, x="sparsity", y="accuracy", hue="method", style="method", markers=True, dashes=False, errorbar=("pi", 100), ax=axes)
    axes.axhline(per_seed(main, "acc_dense").mean() * 100, color="grey", linestyle="--", label="dense student")
    axes.set(xlabel="sparsity (fraction of prunable weights removed)", ylabel="test accuracy after retraining (%)")
    axes.legend(fontsize=8, loc="lower left")
    axes.set_title(data_label(records), fontsize=9)
    figure.tight_layout()
    return figure


def ablation_table(records: pd.DataFrame) -> pd.DataFrame:
    """Each variant beside the main-comparison runs of the same method, sparsity and seeds:
    retrained accuracy (%) of both, averaged over the seeds both ran, their difference
    (percentage points) and that number of `seeds`. Pairing seeds compares runs that share their
    teacher and dense student, so a variant run on one seed is not measured against an average
    over seeds it did not run. `reference` and `change` are NaN where no such run has finished (it
    failed, or has not run yet); `accuracy` then averages every seed of the variant."""
    main = main_comparison(records)
    rows = [
        {"variant": variant, "method": label(method), "sparsity": sparsity, **_paired_accuracy(runs, main[(main["method"] == method) & (main["sparsity"] == sparsity)])}
        for (variant, method, sparsity), runs in _variant_cells(records)
    ]
    return pd.DataFrame(rows, columns=["variant", "method", "sparsity", *PAIRED_COLUMNS]).set_index("variant")


def _paired_accuracy(runs: pd.DataFrame, reference_runs: pd.DataFrame) -> dict[str, Any]:
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
    columns = sorted(table.columns, key=_method_order)
    return table.loc[order, columns].round(2).rename(columns=label).rename_axis(columns=None)


def _variant_cells(records: pd.DataFrame) -> Iterator[tuple[tuple[str, str, float], pd.DataFrame]]:
    """The ablation variants' records, one group per (variant, method, sparsity) with its runs
    (one per seed)."""
    return iter(records[records["variant"] != ""].groupby(["variant", "method", "sparsity"]))


def variant_name(changes: dict[str, Any]) -> str:
    """How a variant is named in the `variant` column: its switches, ``key=value`` sorted by key."""
    return VARIANT_SEPARATOR.join(f"{key}={value}" for key, value in sorted(changes.items()))


def variant_switches(variant: str) -> frozenset[str]:
    """The switches (``key=value``) of a `variant` name that `variant_name` wrote."""
    return frozenset(variant.split(VARIANT_SEPARATOR))


def _spoken(variant: str) -> str:
    """A variant's name for running text: its switches joined with " + "."""
    return variant.replace(VARIANT_SEPARATOR, " + ")


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
        for (variant, method, sparsity), runs in _variant_cells(records)
    }
    rows = []
    for (switches, method, sparsity), runs in by_switches.items():
        if len(switches) < 2:
            continue
        for switch in sorted(switches):
            partner = by_switches.get((switches - {switch}, method, sparsity))
            if partner is None:
                continue
            paired = _paired_accuracy(runs, partner)
            if not math.isnan(paired["change"]):
                rows.append({"switch": switch, "alongside": VARIANT_SEPARATOR.join(sorted(switches - {switch})), "method": label(method), "sparsity": sparsity, **paired})
    return pd.DataFrame(rows, columns=["switch", "alongside", "method", "sparsity", *PAIRED_COLUMNS])


def ablation_text(records: pd.DataFrame, profile: Profile) -> str:
    """The ablations in words (plain text): each finished variant's change against its reference run
    (percentage points, largest first), each switch of a combined variant against the variant
    without it (`switch_effects`), the variants of `profile` not finished yet, and how much a
    second seed moves the reference, where one has run, to tell a change from noise.

    A variant is named by its switches joined with " + "; one whose method and sparsity are not
    those of most variants (the usual case: teacher-guided at one sparsity; teacher-guided wins a
    tie) also names them."""
    switched = ((profile.changes(config), config) for config in profile.configs())
    planned = list(dict.fromkeys((variant_name(changes), label(config.method), config.sparsity) for changes, config in switched if changes))
    if not planned:
        return "This profile runs no ablations."
    every_variant = ablation_table(records)
    table = every_variant.dropna(subset=["reference"])
    unreferenced = every_variant[every_variant["reference"].isna()]
    if table.empty:
        return f"No ablation has finished beside its reference run yet ({len(planned)} planned)."
    cells = Counter((method, sparsity) for _, method, sparsity in planned)
    usual_method, usual_sparsity = max(cells, key=lambda cell: (cells[cell], cell[0] == label(OURS)))  # a tie goes to ours

    def named(variant: str, method: str, sparsity: float) -> str:
        unusual = (method, sparsity) != (usual_method, usual_sparsity)
        return _spoken(variant) + (f" for {method} at {sparsity * 100:.0f} %" if unusual else "")

    table = table.sort_values("change", key=abs, ascending=False, kind="stable")
    changes = [
        f"{named(variant, row.method, row.sparsity)} {_change_phrase(row)}" for variant, row in table.iterrows()
    ]
    text = (
        f"Each ablation changes {usual_method} at {usual_sparsity * 100:.0f} % sparsity unless it names another method or sparsity. "
        f"Against the main-comparison run of the same method, sparsity and seed (the same teacher and dense student), the accuracy after retraining changed by "
        f"(percentage points, largest first): {_and_list(changes)}."
    )
    split = switch_effects(records)
    if not split.empty:
        parts = [
            f"{row.switch} alongside {named(row.alongside, row.method, row.sparsity)} {_change_phrase(row)}" for row in split.itertuples()
        ]
        text += f" Switch by switch, against the variant that sets the others only: {_and_list(parts)}."
    if not unreferenced.empty:
        alone = [f"{named(variant, row.method, row.sparsity)} {row.accuracy:.1f} %" for variant, row in unreferenced.iterrows()]
        text += f" Without a finished main-comparison run to compare with (it failed or has not run): {_and_list(alone)}."
    text += _same_switches_sentence(records)
    finished = set(zip(every_variant.index, every_variant["method"], every_variant["sparsity"]))
    missing = [named(*cell) for cell in planned if cell not in finished]
    if missing:
        text += f" Not run yet: {_and_list(missing)}."
    return f"{text} {_seed_spread_sentence(records, table)}"


def _same_switches_sentence(records: pd.DataFrame) -> str:
    """The methods that ran under the same variant, most accurate first (from `ablation_matrix`),
    as a sentence that starts with a space; empty when no variant ran for two methods."""
    matrix = ablation_matrix(records)
    shared = [
        f"with {_spoken(variant)} at {sparsity * 100:.0f} % ({_seeds_phrase(seeds)}), "
        + _and_list([f"{method} {accuracy:.1f} %" for method, accuracy in row.dropna().sort_values(ascending=False).items()])
        for (sparsity, variant, seeds), row in matrix.iterrows()
        if variant != MAIN_ROW and row.notna().sum() > 1
    ]
    return f" Methods under the same switches, most accurate first: {'; '.join(shared)}." if shared else ""


def _seeds_phrase(seeds: str) -> str:
    """An `ablation_matrix` row's ``seeds`` for running text: "seed 0", "seeds 0, 2", or that
    its methods ran on different seeds."""
    if seeds == "none shared":
        return "no seed shared: each method's own seeds"
    return f"seed{'s' if ',' in seeds else ''} {seeds}"


def _change_phrase(row: Any) -> str:
    """A table row's change and the two accuracies it is the difference of, with the number of
    seeds they average where it is more than one, e.g. "+0.5 (80.5 % against 80.0 %)" or
    "+0.5 (80.5 % against 80.0 %, 2 seeds)"."""
    seeds = f", {row.seeds} seeds" if row.seeds > 1 else ""
    return f"{row.change:+.1f} ({row.accuracy:.1f} % against {row.reference:.1f} %{seeds})"


def _seed_spread_sentence(records: pd.DataFrame, table: pd.DataFrame) -> str:
    """How far apart the seeds of the ablations' reference runs landed, or that only one seed ran."""
    main = main_comparison(records)
    spreads = []
    for method, sparsity in table[["method", "sparsity"]].drop_duplicates().itertuples(index=False):
        runs = main[(main["method"].map(label) == method) & (main["sparsity"] == sparsity)]["acc_retrained"]
        if len(runs) > 1:
            spreads.append((runs.max() - runs.min()) * 100)
    if not spreads:
        return "Each variant and its reference ran with one seed: no second seed has run yet to tell how much of a change is run-to-run noise."
    return f"For scale, the reference runs' seeds landed up to {max(spreads):.1f} points apart."


def ablation_plot(records: pd.DataFrame) -> plt.Figure:
    """Change in retrained accuracy (percentage points) of each variant against its reference
    (variants whose reference run has not finished are left out: they have no change)."""
    table = ablation_table(records).dropna(subset=["reference"]).reset_index()
    if table.empty:
        figure, axes = plt.subplots(figsize=(6, 1))
        axes.axis("off")
        axes.text(0.5, 0.5, "no ablation has finished beside its reference run", ha="center", va="center")
        return figure
    table["name"] = table["variant"] + " (" + table["method"] + ", " + table["sparsity"].map("{:.0%}".format) + ")"
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.35 * len(table))))
    sns.barplot(data=table, y="name", x="change", color="tab:blue", ax=axes)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set(xlabel="change in test accuracy after retraining (percentage points)", ylabel="")
    axes.set_title(data_label(records), fontsize=9)
    figure.tight_layout()
    return figure


def efficiency_table(records: pd.DataFrame) -> pd.DataFrame:
    """Cost each method pays at the `comparison_sparsity`, in its run of the first seed (seeds can
    run on different machines; cells of one seed can too, in later sessions, so seconds compare
    only where the records' ``environment`` and ``finished_at`` agree): images through the student
    backward, estimated FLOPs, wall seconds, accuracy, and ratios to ours."""
    top = _at_comparison_sparsity(records)
    top = top[top["seed"] == top["seed"].min()]
    table = top.groupby("method")[["total_images", "total_flops", "total_seconds", "acc_retrained"]].mean()
    if OURS in table.index:
        table[["images vs ours", "FLOPs vs ours"]] = _cost_over_ours(table).round(2).to_numpy()
    table["acc_retrained"] = (table["acc_retrained"] * 100).round(2)
    table["total_flops"] = table["total_flops"].map("{:.3g}".format)
    table["total_seconds"] = table["total_seconds"].round(1)
    table = table.loc[sorted(table.index, key=_method_order)]
    table.index = [label(name) for name in table.index]
    return table.rename(columns={"total_images": "images (backward)", "total_flops": "FLOPs", "total_seconds": "seconds", "acc_retrained": "accuracy (%)"})


def _cost_over_ours(by_method: pd.DataFrame) -> pd.DataFrame:
    """Each method's ``total_images`` and ``total_flops`` (columns of `by_method`, one row per
    method, ours among them) divided by ours'."""
    costs = by_method[["total_images", "total_flops"]]
    return costs / costs.loc[OURS]


def phase_costs(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """Per method (main comparison at the `comparison_sparsity`, first seed) and phase it pays
    for: wall seconds, images forward and backward through the student, images through the teacher."""
    rows = []
    for method, record in _records_at_comparison(out_dir, records).items():
        compute = record["compute"]
        for phase in compute["counted"]:
            rows.append({"method": label(method), "phase": phase, **compute["phases"][phase]})
    return pd.DataFrame(rows).set_index(["method", "phase"]).round({"seconds": 1})


PHASE_NAMES = {"teacher": "teacher", "dense": "dense student", "calibrate": "γ calibration", "guide": "guiding", "score": "scoring", "retrain": "retraining"}


def phase_seconds_text(out_dir: str | Path, records: pd.DataFrame, method: str = OURS) -> str:
    """Wall seconds of each phase `method` paid for, as one line of text ("teacher 3,600 s, …"),
    from `phase_costs`; the shared teacher and dense phases carry the seconds their checkpoint took."""
    costs = phase_costs(out_dir, records)
    if label(method) not in costs.index.get_level_values("method"):
        raise ValueError(f"no finished {method} run at {comparison_sparsity(records):.0%} sparsity")
    seconds = costs.loc[label(method), "seconds"]
    return ", ".join(f"{PHASE_NAMES.get(phase, phase)} {value:,.{0 if value >= 10 else 1}f} s" for phase, value in seconds.items())


def _layers_at_comparison(out_dir: str | Path, records: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Per method label, the per-layer mask summary (name, shape, kept, total, density) of its run
    at the `comparison_sparsity` (first seed), in network order."""
    return {label(method): record["sparsity"]["layers"] for method, record in _records_at_comparison(out_dir, records).items()}


def layer_density_heatmap(out_dir: str | Path, records: pd.DataFrame) -> plt.Figure:
    """Density (fraction kept) of every prunable layer, one column per method, at the
    `comparison_sparsity` (first seed)."""
    columns = {
        method: {layer["name"].removesuffix(".weight"): layer["density"] for layer in layers}
        for method, layers in _layers_at_comparison(out_dir, records).items()
    }
    frame = pd.DataFrame(columns)
    figure, axes = plt.subplots(figsize=(1.2 + 0.75 * len(columns), 1.5 + 0.25 * len(frame)))
    sns.heatmap(frame, vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "density (fraction kept)"}, ax=axes)
    axes.set_title(f"{comparison_sparsity(records):.0%} sparse; {data_label(records)}", fontsize=8)
    figure.tight_layout()
    return figure


def thinnest_layers(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """Per method at the `comparison_sparsity` (first seed): the prunable layer it keeps the
    smallest fraction of, with weights kept / total and that density in percent. A layer kept at a
    few weights passes little more than what its residual connection carries around it."""
    rows = []
    for method, layers in _layers_at_comparison(out_dir, records).items():
        thinnest = min(layers, key=lambda layer: layer["density"])
        rows.append({"method": method, "thinnest layer": thinnest["name"].removesuffix(".weight"),
                     "kept": thinnest["kept"], "of": thinnest["total"], "density (%)": round(thinnest["density"] * 100, 2)})
    return pd.DataFrame(rows).set_index("method").sort_values("density (%)")


def figure_source(records: pd.DataFrame, profile: str) -> str:
    """The sentence of a figure caption that says what the figure was drawn from.

    It names the profile, how many finished runs of the main comparison (each listed by run id in
    the book's table of every run), their seeds and their data, in Markdown.
    """
    records = main_comparison(records)
    seeds = sorted(records["seed"].unique())
    runs = f"{len(records)} finished run{'s' if len(records) > 1 else ''}"
    seed_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(seed) for seed in seeds)}"
    return f"Drawn from the {runs} of profile `{profile}` ({seed_text}; run ids under *Every run*), on {data_label(records)}."


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


def layer_density(record: dict[str, Any]) -> plt.Figure:
    """Fraction of weights kept in each prunable layer of one run."""
    layers = pd.DataFrame(record["sparsity"]["layers"])
    figure, axes = plt.subplots(figsize=(6, max(3, 0.18 * len(layers))))
    sns.barplot(data=layers, y="name", x="density", color="tab:blue", ax=axes)
    axes.set(xlabel="density (fraction of weights kept)", ylabel="", xlim=(0, 1))
    figure.tight_layout()
    return figure


def headline(records: pd.DataFrame) -> dict[str, float]:
    """Numbers for the book's text, from the main comparison at its `comparison_sparsity`.

    Keys: ``runs``, ``sparsity`` (%), ``teacher_accuracy``, ``dense_accuracy`` (%, means over
    seeds of each seed's one teacher and dense student), ``seeds_<method>`` (how many seeds the mean
    of the method's accuracy averages), ``spread_<method>`` (percentage points between its most and
    least accurate seed; 0 with one seed),
    ``accuracy_<method>`` (%) for each method there; when ours ran beside others,
    ``methods_compared``, ``ours_rank`` (1 = most accurate) and ``gap_to_best_other`` (percentage
    points, negative when another method is more accurate), ``images_vs_ours_<method>`` and
    ``flops_vs_ours_<method>`` (each other method's images through the student's backward and its
    FLOPs, over ours; both count the teacher and dense student a method pays for).
    """
    main = main_comparison(records)
    top = _at_comparison_sparsity(records)
    by_method = top.groupby("method")[["acc_retrained", "total_images", "total_flops"]].mean()
    seeds = top.groupby("method")["seed"].nunique()
    spread = top.groupby("method")["acc_retrained"].agg(lambda accuracy: (accuracy.max() - accuracy.min()) * 100)
    numbers: dict[str, float] = {
        "runs": len(records),
        "sparsity": float(top["sparsity"].iloc[0] * 100),
        "teacher_accuracy": float(per_seed(main, "acc_teacher").mean() * 100),
        "dense_accuracy": float(per_seed(main, "acc_dense").mean() * 100),
        **{f"accuracy_{method}": float(row.acc_retrained * 100) for method, row in by_method.iterrows()},
        **{f"seeds_{method}": int(count) for method, count in seeds.items()},
        **{f"spread_{method}": float(points) for method, points in spread.items()},
    }
    if OURS in by_method.index and len(by_method) > 1:
        accuracy = by_method["acc_retrained"]
        numbers["methods_compared"] = len(accuracy)
        numbers["ours_rank"] = _rank(accuracy, OURS)
        numbers["gap_to_best_other"] = float((accuracy[OURS] - accuracy.drop(OURS).max()) * 100)
        ratios = _cost_over_ours(by_method).drop(OURS)
        for column, quantity in (("total_images", "images_vs_ours"), ("total_flops", "flops_vs_ours")):
            numbers.update({f"{quantity}_{m}": float(ratio) for m, ratio in ratios[column].items()})
    return numbers


def planned_methods(profile: Profile, sparsity: float) -> list[str]:
    """The methods `profile` runs in its main comparison at `sparsity` (fraction), in file order."""
    configs = [config for config in profile.configs() if not profile.changes(config) and math.isclose(config.sparsity, sparsity)]
    return list(dict.fromkeys(config.method for config in configs))


def headline_text(records: pd.DataFrame, profile: Profile) -> str:
    """The book's headline paragraph (plain text) for `profile`, written from `headline`: ours
    against every other method finished at the `comparison_sparsity`, the methods the profile
    plans there that have not finished yet, and `iterative_cost_text`."""
    numbers = headline(records)
    planned = planned_methods(profile, comparison_sparsity(records))
    at = f"{numbers['sparsity']:.0f} % sparsity"
    text = _trained_once_sentence(records)
    if f"accuracy_{OURS}" not in numbers:
        return text + f"Teacher-guided pruning has not finished at {at} yet."
    text += f"At {at}, the teacher-guided student reaches {numbers[f'accuracy_{OURS}']:.1f} % after retraining"
    if "ours_rank" not in numbers:
        return text + "; no other method has finished there yet."
    others = [m for m in _methods_in(numbers, "accuracy") if m != OURS]
    text += ", against " + _and_list([f"{numbers[f'accuracy_{m}']:.1f} % for {label(m)}" for m in others]) + ". "
    best_other = max(others, key=lambda m: numbers[f"accuracy_{m}"])  # the method `gap_to_best_other` measures against
    gap = numbers["gap_to_best_other"]
    text += (
        f"It ranks {numbers['ours_rank']:.0f} of the {numbers['methods_compared']:.0f} methods finished there, "
        f"{abs(gap):.1f} percentage points {'behind' if gap < 0 else 'ahead of'} the best of the others, {label(best_other)}."
    )
    text += _seeds_sentence(numbers, best_other) + _cheaper_and_better_sentence(numbers)
    missing = [label(m) for m in planned if f"accuracy_{m}" not in numbers]
    if missing:
        text += f" Not yet run at {at}: {_and_list(missing)}."
    return f"{text} {_iterative_cost_sentence(numbers, 'imp' in planned)}"


def _methods_in(numbers: dict[str, float], quantity: str) -> list[str]:
    """The methods that `headline`'s `numbers` hold a ``<quantity>_<method>`` key for, in the
    book's order (`_method_order`: methods of one's own after the book's)."""
    prefix = f"{quantity}_"
    return sorted((key.removeprefix(prefix) for key in numbers if key.startswith(prefix)), key=_method_order)


def _trained_once_sentence(records: pd.DataFrame) -> str:
    """The accuracy of the teacher and dense student every run of a seed shares, one per seed."""
    teachers, students = per_seed(records, "acc_teacher") * 100, per_seed(records, "acc_dense") * 100
    if len(teachers) == 1:
        return f"The teacher reached {teachers.iloc[0]:.1f} % test accuracy and the dense student {students.iloc[0]:.1f} %. "
    seeds = _and_list([str(seed) for seed in teachers.index])
    return (
        f"The teachers of seeds {seeds} reached {_and_list([f'{a:.1f}' for a in teachers])} % test accuracy, "
        f"their dense students {_and_list([f'{a:.1f}' for a in students])} %. "
    )


def _seeds_sentence(numbers: dict[str, float], best_other: str) -> str:
    """From `headline`'s `numbers`: which accuracies at the comparison sparsity average several
    seeds, how far ours' and the best other method's seeds landed apart, and whether the gap
    between the two exceeds that; empty while every method ran one seed."""
    seeds = {m: int(numbers[f"seeds_{m}"]) for m in _methods_in(numbers, "seeds")}
    several = [m for m in seeds if seeds[m] > 1]
    if not several:
        return ""
    others = "" if len(several) == len(seeds) else "; the others ran one seed"
    text = f" Means over seeds for {_and_list([f'{label(m)} ({seeds[m]})' for m in several])}{others}."
    pair = [m for m in (OURS, best_other) if seeds.get(m, 0) > 1]
    if pair:
        moved = _and_list([f"{numbers[f'spread_{m}']:.1f} points for {label(m)}" for m in pair])
        verdict = "wider" if abs(numbers["gap_to_best_other"]) > max(numbers[f"spread_{m}"] for m in pair) else "no wider"
        text += f" Seed to seed, the accuracy moved {moved}: the gap above is {verdict} than that."
    return text


def _cheaper_and_better_sentence(numbers: dict[str, float]) -> str:
    """From `headline`'s `numbers`: the methods more accurate than ours for fewer FLOPs, or, when
    some are more accurate, that none of them cost less; empty when ours is the most accurate."""
    ours = numbers[f"accuracy_{OURS}"]
    cheaper = [m for m in _methods_in(numbers, "flops_vs_ours") if numbers[f"flops_vs_ours_{m}"] < 1 and numbers[f"accuracy_{m}"] > ours]
    if not cheaper:
        return "" if numbers["ours_rank"] == 1 else " None of the more accurate methods cost fewer FLOPs than it."
    ratios = _and_list([f"{label(m)} at {numbers[f'flops_vs_ours_{m}']:.2f} × its FLOPs" for m in cheaper])
    return f" More accurate for fewer FLOPs, counting the teacher and dense student each pays for: {ratios}."


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def iterative_cost_text(records: pd.DataFrame, profile: Profile) -> str:
    """One sentence: IMP's cost over ours at the `comparison_sparsity`, or that IMP has not run
    there yet, or that `profile` does not run it there at all."""
    numbers = headline(records)
    return _iterative_cost_sentence(numbers, "imp" in planned_methods(profile, comparison_sparsity(records)))


def _iterative_cost_sentence(numbers: dict[str, float], imp_planned: bool) -> str:
    at = f"{numbers['sparsity']:.0f} % sparsity"
    if "images_vs_ours_imp" not in numbers and not imp_planned:
        return f"This profile does not run iterative magnitude pruning at {at}, so it compares no costs with it."
    if "images_vs_ours_imp" not in numbers:
        return f"Iterative magnitude pruning has not been run beside teacher-guided pruning at {at} in this profile yet."
    return (
        f"At {at}, iterative magnitude pruning passed {numbers['images_vs_ours_imp']:.2f} × as many images "
        f"through the student as teacher-guided one-shot pruning, for {numbers['flops_vs_ours_imp']:.2f} × the FLOPs "
        "(both counting the training of the teacher and dense student they pay for)."
    )


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
