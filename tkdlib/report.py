"""Run records → pandas tables and seaborn plots for the book.

Accuracies are top-1 on the test split, in [0, 1]; the tables print them in percent.
Sparsity is the fraction of prunable weights removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tkdlib.experiment import RECORD_NAME

METHOD_LABELS = {
    "teacher_guided": "teacher-guided (ours)",
    "ce_gradient": "CE gradient (no teacher)",
    "magnitude": "magnitude",
}
STAGES = ("teacher", "dense", "guided", "pruned", "retrained")


def load_records(out_dir: str | Path) -> pd.DataFrame:
    """One row per finished run under `out_dir`, sorted by method, sparsity and seed."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{RECORD_NAME}")):
        record = json.loads(path.read_text())
        if record.get("status") == "finished":
            rows.append(_row(record))
    if not rows:
        raise FileNotFoundError(f"No finished run records under {out_dir}; run `python -m tkdlib batch` first.")
    return pd.DataFrame(rows).sort_values(["method", "sparsity", "seed"], ignore_index=True)


def _row(record: dict[str, Any]) -> dict[str, Any]:
    config = record["config"]
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
        "seconds": record["seconds"]["total"],
        "data": record["data"]["train"],
        "device": record["environment"]["device"],
    }


def results_table(records: pd.DataFrame) -> pd.DataFrame:
    """Mean retrained accuracy (%) per method (rows) and sparsity (columns); seeds averaged."""
    table = records.pivot_table(index="method", columns="sparsity", values="acc_retrained", aggfunc="mean") * 100
    table.index = [METHOD_LABELS.get(name, name) for name in table.index]
    table.columns = [f"{s:.0%} sparse" for s in table.columns]
    return table.round(2)


def accuracy_vs_sparsity(records: pd.DataFrame) -> plt.Figure:
    """Retrained test accuracy against sparsity, one line per method, the dense student dashed."""
    data = records.assign(
        method=records["method"].map(lambda name: METHOD_LABELS.get(name, name)),
        accuracy=records["acc_retrained"] * 100,
    )
    figure, axes = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="sparsity", y="accuracy", hue="method", style="method", markers=True, dashes=False, ax=axes)
    axes.axhline(records["acc_dense"].mean() * 100, color="grey", linestyle="--", label="dense student")
    axes.set(xlabel="sparsity (fraction of prunable weights removed)", ylabel="test accuracy after retraining (%)")
    axes.legend()
    axes.set_title(data_label(records), fontsize=9)
    figure.tight_layout()
    return figure


def data_label(records: pd.DataFrame) -> str:
    """Which data the runs used, for figure titles; says so when the pixels are the JPEG copy."""
    label = ", ".join(sorted(records["dataset"].unique()))
    if records["data"].str.contains("JPEG").any():
        label += " (JPEG re-encoding of CIFAR-10: exact labels, lossy pixels)"
    return label


def figure_source(records: pd.DataFrame, profile: str) -> str:
    """The sentence of a figure caption that says what the figure was drawn from.

    It names the profile, how many finished runs (each listed by run id in the book's table of
    every run), their seeds and their data, in Markdown.
    """
    seeds = sorted(records["seed"].unique())
    runs = f"{len(records)} finished run{'s' if len(records) > 1 else ''}"
    seed_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(seed) for seed in seeds)}"
    return f"Drawn from the {runs} of profile `{profile}` ({seed_text}; run ids under *Every run*), on {data_label(records)}."


def run_summary(record: dict[str, Any]) -> pd.DataFrame:
    """Test accuracy (%) after each stage of one run, with the seconds each phase took."""
    phase_of_stage = {"teacher": "teacher", "dense": "dense", "guided": "guide", "pruned": "score", "retrained": "retrain"}
    rows = [
        {"stage": stage, "accuracy (%)": round(record["accuracy"][stage] * 100, 2), "phase seconds": record["seconds"].get(phase_of_stage[stage])}
        for stage in STAGES
        if stage in record["accuracy"]
    ]
    return pd.DataFrame(rows).set_index("stage")


def layer_density(record: dict[str, Any]) -> plt.Figure:
    """Fraction of weights kept in each prunable layer of one run."""
    layers = pd.DataFrame(record["sparsity"]["layers"])
    figure, axes = plt.subplots(figsize=(6, max(3, 0.18 * len(layers))))
    sns.barplot(data=layers, y="name", x="density", color="tab:blue", ax=axes)
    axes.set(xlabel="density (fraction of weights kept)", ylabel="", xlim=(0, 1))
    figure.tight_layout()
    return figure


def headline(records: pd.DataFrame) -> dict[str, float]:
    """Numbers for the book's text: accuracies in percent at the grid's highest sparsity.

    Keys: ``runs``, ``max_sparsity`` (%), ``teacher_accuracy``, ``dense_accuracy`` and
    ``accuracy_at_max_<method>`` for each method run at that sparsity (seeds averaged).
    """
    top = float(records["sparsity"].max())
    at_top = records[records["sparsity"] == top].groupby("method")["acc_retrained"].mean() * 100
    return {
        "runs": len(records),
        "max_sparsity": top * 100,
        "teacher_accuracy": float(records["acc_teacher"].mean() * 100),
        "dense_accuracy": float(records["acc_dense"].mean() * 100),
        **{f"accuracy_at_max_{method}": float(accuracy) for method, accuracy in at_top.items()},
    }
