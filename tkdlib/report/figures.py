"""The book's figures (matplotlib / seaborn), from `tkdlib.report.records` frames, with one colour
and marker per method on every page (`tkdlib.report.style`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tkdlib.report.records import comparison_sparsity, data_label, layers_at_comparison, main_comparison, per_seed
from tkdlib.report.style import label
from tkdlib.report.tables import ablation_table


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


def layer_density_heatmap(out_dir: str | Path, records: pd.DataFrame) -> plt.Figure:
    """Density (fraction kept) of every prunable layer, one column per method, at the
    `comparison_sparsity` (first seed)."""
    columns = {
        method: {layer["name"].removesuffix(".weight"): layer["density"] for layer in layers}
        for method, layers in layers_at_comparison(out_dir, records).items()
    }
    frame = pd.DataFrame(columns)
    figure, axes = plt.subplots(figsize=(1.2 + 0.75 * len(columns), 1.5 + 0.25 * len(frame)))
    sns.heatmap(frame, vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "density (fraction kept)"}, ax=axes)
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
