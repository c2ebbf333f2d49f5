"""The book's figures (matplotlib / seaborn), from `tkdlib.report.records` frames, with one colour
and marker per method on every page (`tkdlib.report.style`); ours is the thick red line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, NullFormatter

from tkdlib.report.regimes import HIGH_SPARSITIES, method_ranking, shared_methods
from tkdlib.report.records import (
    OURS, comparison_sparsity, data_label, layers_at_comparison, main_comparison, mask_only, per_seed, read_record,
)
from tkdlib.report.saliency import overlap_matrix
from tkdlib.report.tables import FLOOR_RULE, ablation_changes, layer_rule
from tkdlib.report.style import colour, label, marker, method_order, percent

REMAINING_TICKS = (50, 20, 10, 5, 2, 1)  # % of weights remaining, as in the lottery-ticket and SynFlow papers


def _over_seeds(frame: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    """Mean, min and max of `column` over the seeds of each `by` group (one row per group)."""
    return frame.groupby(by)[column].agg(["mean", "min", "max"]).reset_index()


def _errorbar(axes: plt.Axes, method: str, x: pd.Series, stats: pd.DataFrame, **style: Any) -> None:
    """Mean with a whisker from the lowest to the highest seed, in `method`'s colour and marker;
    `style` adds to or overrides the defaults (``label=None`` leaves it out of the legend)."""
    ours = method == OURS
    style = {"label": label(method), "color": colour(method), "marker": marker(method), "markersize": 7 if ours else 5,
             "linewidth": 2.6 if ours else 1.3, "capsize": 3, "zorder": 3 if ours else 2, **style}
    axes.errorbar(x, stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]], **style)


def _legend_outside(axes: plt.Axes) -> None:
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _remaining_and_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with ``remaining`` (% of prunable weights kept) and ``accuracy`` (retrained, %)."""
    return runs.assign(remaining=(1 - runs["sparsity"]) * 100, accuracy=runs["acc_retrained"] * 100)


def accuracy_vs_remaining(records: pd.DataFrame) -> plt.Figure:
    """Retrained test accuracy (%) against the weights remaining (% of prunable weights, log axis,
    sparser to the right), one line per method: mean over seeds, whiskers from the lowest to the
    highest seed. Open markers, not joined: the runs with a per-layer floor (`FLOOR_RULE`), which
    stand where a global ranking would empty a layer. Dotted lines: the dense teacher and dense
    student (means over seeds)."""
    main = _remaining_and_accuracy(main_comparison(records))
    floored = _remaining_and_accuracy(records[records["variant"].map(layer_rule).str.startswith(FLOOR_RULE, na=False)])
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for method, runs in sorted(main.groupby("method"), key=lambda item: method_order(item[0])):
        stats = _over_seeds(runs, ["remaining"], "accuracy").sort_values("remaining", ascending=False)
        _errorbar(axes, method, stats["remaining"], stats)
    for method, runs in floored.groupby("method"):
        stats = _over_seeds(runs, ["remaining"], "accuracy")
        _errorbar(axes, method, stats["remaining"], stats, linestyle="none", markerfacecolor="white", label=None)
    for column, name in (("acc_teacher", "dense teacher"), ("acc_dense", "dense student")):
        accuracy = per_seed(main, column).dropna()
        if not accuracy.empty:
            axes.axhline(accuracy.mean() * 100, color="black" if column == "acc_teacher" else "grey", linestyle=":", linewidth=1.2, label=name)
    if not floored.empty:  # a legend entry for the open markers, after the methods' (the legend lists lines, then error bars)
        axes.errorbar([], [], linestyle="none", marker="o", color="grey", markerfacecolor="white", label="open marker: per-layer floor")
    remaining = pd.concat([main["remaining"], floored["remaining"]])  # the ticks cover both
    axes.set_xscale("log")
    axes.invert_xaxis()
    shown = sorted({tick for tick in REMAINING_TICKS if remaining.min() * 0.8 <= tick <= remaining.max() * 1.25} | set(remaining.round(1)), reverse=True)
    axes.set_xticks(shown)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set(xlabel="weights remaining (log scale; sparser to the right)", ylabel="test accuracy after retraining (%)")
    axes.grid(axis="y", alpha=0.3)
    _legend_outside(axes)
    axes.set_title(data_label(records), fontsize=9)
    figure.tight_layout()
    return figure


def cost_vs_accuracy(records: pd.DataFrame) -> plt.Figure:
    """At the `comparison_sparsity`: each method's FLOPs through training (log axis; counting the
    teacher and dense student it pays for) against its retrained accuracy (%), means over seeds
    with whiskers from the lowest to the highest seed. The dashed line joins the methods that no
    cheaper method beats (the Pareto front): one-shot against iterative at a glance."""
    top = main_comparison(records)
    top = top[top["sparsity"] == comparison_sparsity(records)].assign(accuracy=lambda frame: frame["acc_retrained"] * 100)
    costs = top.groupby("method")["total_flops"].mean()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for method, runs in sorted(top.groupby("method"), key=lambda item: method_order(item[0])):
        stats = _over_seeds(runs, ["method"], "accuracy")
        _errorbar(axes, method, [costs[method]], stats, linestyle="none")
    front = _pareto_front(costs, top.groupby("method")["accuracy"].mean())
    axes.plot(costs[front], top.groupby("method")["accuracy"].mean()[front], color="grey", linestyle="--", linewidth=1, zorder=1, label="Pareto front")
    axes.set_xscale("log")
    axes.set(xlabel="FLOPs through training (log scale)", ylabel="test accuracy after retraining (%)")
    axes.grid(alpha=0.3)
    _legend_outside(axes)
    axes.set_title(f"{percent(comparison_sparsity(records))} sparse; {data_label(records)}", fontsize=9)
    figure.tight_layout()
    return figure


def _pareto_front(cost: pd.Series, accuracy: pd.Series) -> list[str]:
    """The methods (index of both series), cheapest first, that are more accurate than every cheaper one."""
    front, best = [], float("-inf")
    for method in cost.sort_values().index:
        if accuracy[method] > best:
            front.append(method)
            best = accuracy[method]
    return front


def ablation_plot(records: pd.DataFrame) -> plt.Figure:
    """Change in retrained accuracy (percentage points) of each variant against the main run of
    the same method, sparsity and seed: a bar at the mean over seeds, a dot per seed, so the seed
    spread is in view (variants without a finished main run are left out: they have no change)."""
    changes = ablation_changes(records)
    if changes.empty:
        figure, axes = plt.subplots(figsize=(6, 1))
        axes.axis("off")
        axes.text(0.5, 0.5, "no ablation has finished beside its reference run", ha="center", va="center")
        return figure
    changes["name"] = changes["variant"] + " (" + changes["method"].map(label) + ", " + changes["sparsity"].map(percent) + ")"
    order = changes.groupby("name")["change"].mean().sort_values().index
    figure, axes = plt.subplots(figsize=(9, max(2.5, 0.45 * len(order))))
    palette = {name: colour(method) for name, method in zip(changes["name"], changes["method"])}
    sns.barplot(data=changes, y="name", x="change", hue="name", palette=palette, order=order, errorbar=None, alpha=0.55, legend=False, ax=axes)
    sns.stripplot(data=changes, y="name", x="change", order=order, color="black", size=5, jitter=False, ax=axes)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set(xlabel="change in accuracy after retraining (points; a dot per seed)", ylabel="")
    figure.suptitle(data_label(records), fontsize=9)
    figure.tight_layout()
    return figure


DENSITY_FLOOR = 1e-4  # the lowest density the heatmap's log colour scale shows; emptied layers are drawn there


def layer_density_heatmap(out_dir: str | Path, records: pd.DataFrame) -> plt.Figure:
    """Density (fraction kept) of every prunable layer, one column per method (ours first, then
    the book's method order), at the `comparison_sparsity` (first seed). The colour scale is
    logarithmic, as densities span 10⁻⁴ to 1 at high sparsity; an emptied layer (density 0) is
    drawn at the scale's floor, `DENSITY_FLOOR`."""
    columns = {
        method: {layer["name"].removesuffix(".weight"): layer["density"] for layer in layers}
        for method, layers in layers_at_comparison(out_dir, records).items()
    }
    order = {label(method): method_order(method) for method in records["method"].unique()}
    frame = pd.DataFrame(columns)[sorted(columns, key=lambda name: order.get(name, (len(order), name)))]
    figure, axes = plt.subplots(figsize=(1.2 + 0.75 * len(columns), 1.5 + 0.25 * len(frame)))
    sns.heatmap(
        frame.clip(lower=DENSITY_FLOOR), norm=LogNorm(vmin=DENSITY_FLOOR, vmax=1), cmap="viridis",
        cbar_kws={"label": "density (fraction kept, log scale)"}, ax=axes,
    )
    axes.set_title(f"{comparison_sparsity(records):.0%} sparse; {data_label(records)}", fontsize=8)
    figure.tight_layout()
    return figure


def layer_density(record: dict[str, Any]) -> plt.Figure:
    """Fraction of weights kept in each prunable layer of one run."""
    layers = pd.DataFrame(record["sparsity"]["layers"])
    figure, axes = plt.subplots(figsize=(6, max(3, 0.18 * len(layers))))
    sns.barplot(data=layers, y="name", x="density", color="tab:blue", ax=axes)
    axes.set(xlabel="density (fraction of weights kept)", ylabel="", xlim=(0, 1))
    figure.tight_layout()
    return figure


def layer_density_comparison(out_dir: str | Path, records: pd.DataFrame, methods: tuple[str, ...] = (OURS, "ce_gradient", "magnitude")) -> plt.Figure:
    """Density (% of weights kept, log axis) of every prunable layer in network order, one line per
    method of `methods` that finished at the `comparison_sparsity` (first seed): where the
    teacher-guided mask spends its weights against the CE gradient and magnitude."""
    layers = layers_at_comparison(out_dir, records)
    figure, axes = plt.subplots(figsize=(9, 4))
    names: list[str] = []
    for method in methods:
        if label(method) not in layers:
            continue
        densities = pd.DataFrame(layers[label(method)])
        names = [name.removesuffix(".weight") for name in densities["name"]]
        style = {"linewidth": 2.6, "markersize": 6} if method == OURS else {"linewidth": 1.3, "markersize": 4}
        axes.plot(range(len(densities)), densities["density"] * 100, color=colour(method), marker=marker(method), label=label(method), **style)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} %"))
    return _per_layer_finish(figure, axes, names, "weights kept in the layer (log scale)", f"{percent(comparison_sparsity(records))} sparse; {data_label(records)}")


def _per_layer_finish(figure: plt.Figure, axes: plt.Axes, names: list[str], ylabel: str, title: str) -> plt.Figure:
    """The common finish of a figure with one x position per prunable layer (`names`, network
    order): layer names under the axis, horizontal grid, legend outside, title."""
    axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes.set(ylabel=ylabel, xlabel="")
    axes.grid(axis="y", alpha=0.3)
    _legend_outside(axes)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def _message_figure(text: str) -> plt.Figure:
    """A small figure that says, in words, why there is nothing to draw yet."""
    figure, axes = plt.subplots(figsize=(6, 1.2))
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=10)
    axes.set_axis_off()
    return figure


NO_STUDY_RUN = "No mask-only run of the saliency study has finished yet."


def overlap_heatmaps(out_dir: str | Path, records: pd.DataFrame) -> plt.Figure:
    """One heatmap per sparsity of the mask-only runs: the Jaccard index (%) of every two methods'
    kept weights on the same dense student, averaged over seeds (`overlap_matrix`)."""
    sparsities = sorted(mask_only(records)["sparsity"].unique())
    if not sparsities:
        return _message_figure(NO_STUDY_RUN)
    matrices = [overlap_matrix(out_dir, records, sparsity) for sparsity in sparsities]
    # one panel per row: method names are long, and side by side the cells would be too small to read
    figure, axes = plt.subplots(len(matrices), 1, figsize=(7.5, sum(2.0 + 0.45 * len(matrix) for matrix in matrices)), squeeze=False)
    for axis, sparsity, matrix in zip(axes[:, 0], sparsities, matrices):
        sns.heatmap(
            matrix, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f", annot_kws={"fontsize": 8}, square=True,
            cbar_kws={"label": "in common (Jaccard, %)"}, ax=axis,
        )
        axis.tick_params(labelsize=8)
        axis.set_title(f"{percent(sparsity)} sparse, before retraining", fontsize=9)
    figure.tight_layout()
    return figure


def layer_density_gap(out_dir: str | Path, records: pd.DataFrame, sparsity: float | None = None, others: tuple[str, ...] = ("ce_gradient", "snip", "magnitude")) -> plt.Figure:
    """Per prunable layer (network order), the density of ours minus that of each of `others`
    (percentage points of the layer's weights), first seed of the mask-only runs at `sparsity`
    (default: the lowest they ran): where the teacher moves the kept weights."""
    runs = mask_only(records)
    if sparsity is None and not runs.empty:
        sparsity = float(runs["sparsity"].min())
    runs = runs[runs["sparsity"] == sparsity].sort_values("seed").drop_duplicates("method").set_index("method")
    if OURS not in runs.index:
        return _message_figure(NO_STUDY_RUN if runs.empty else f"No mask-only run of {label(OURS)} at {percent(sparsity)} has finished yet.")
    densities = {
        method: pd.Series({layer["name"].removesuffix(".weight"): layer["density"] for layer in read_record(out_dir, run)["sparsity"]["layers"]})
        for method, run in runs["run"].items()
    }
    figure, axes = plt.subplots(figsize=(9, 3.8))
    for method in others:
        if method in densities:
            gap = (densities[OURS] - densities[method]) * 100
            axes.plot(range(len(gap)), gap.to_numpy(), color=colour(method), marker=marker(method), markersize=4, linewidth=1.3, label=f"ours − {label(method)}")
    axes.axhline(0, color="black", linewidth=0.8)
    return _per_layer_finish(figure, axes, list(densities[OURS].index), "density difference (points)", f"{percent(sparsity)} sparse, first seed; {data_label(records)}")


def regime_slopes(regimes: Mapping[str, pd.DataFrame], sparsities: tuple[float, ...] = HIGH_SPARSITIES) -> plt.Figure:
    """One panel per sparsity where two or more methods finished in every regime: each method's
    retrained accuracy (%, mean over seeds) in each regime (x, in the order given), joined by a
    line, so a crossing line is a change of rank. Ours is the thick line."""
    panels = [(sparsity, methods) for sparsity in sparsities if len(methods := shared_methods(regimes, sparsity)) >= 2]
    if not panels:
        return _message_figure("No sparsity has two methods finished in every regime yet.")
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 2.2, 4.2), squeeze=False)
    names = list(regimes)
    for axis, (sparsity, methods) in zip(axes[0], panels):
        rankings = {name: method_ranking(records, sparsity, methods) for name, records in regimes.items()}
        for method in methods:
            ours = method == OURS
            axis.plot(
                range(len(names)), [rankings[name].loc[method, "mean"] for name in names], label=label(method), color=colour(method),
                marker=marker(method), linewidth=2.6 if ours else 1.3, markersize=7 if ours else 5, zorder=3 if ours else 2,
            )
        axis.set_xticks(range(len(names)), names)
        axis.set_xlim(-0.3, len(names) - 0.7)
        axis.set_title(f"{percent(sparsity)} sparse", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy after retraining (%)")
    _legend_outside(axes[0, -1])
    figure.tight_layout()
    return figure
