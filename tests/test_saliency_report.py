"""The saliency study's tables and sentences (tkdlib.report.saliency), on records written here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tkdlib.experiment import RECORD_NAME
from tkdlib.report import (
    emptied_layers, guiding_table, mask_accuracy_table, normalization_table, overlap_matrix, retraining_normalization_table, saliency_table,
    earned_variants, saliency_text, score_batches_table, variant_decision_table,
)
from tkdlib.sparse_checkpoint import save_sparse


def _run(run: str, method: str, seed: int, variant: str = "", *, sparsity: float = 0.9, retrain_epochs: int = 0, pruned: float = 0.1,
         pruned_bn: float = 0.5, retrained: float | None = None, normalize: bool = True, temperature: float = 4.0,
         retrain_normalize: bool | None = None, score_batches: int = 10) -> dict:
    return {
        "run": run, "method": method, "seed": seed, "variant": variant, "sparsity": sparsity, "retrain_epochs": retrain_epochs,
        "score_batches": score_batches, "normalize_logits": normalize, "score_temperature": temperature,
        "retrain_normalize_logits": normalize if retrain_normalize is None else retrain_normalize,
        "acc_pruned": pruned, "acc_pruned_bn": pruned_bn, "acc_retrained": retrained if retrained is not None else pruned,
    }


def test_mask_accuracy_table_averages_seeds_of_the_mask_only_runs_and_nothing_else():
    records = pd.DataFrame([
        _run("a", "teacher_guided", 0, "retrain_epochs=0", pruned=0.10, pruned_bn=0.50),
        _run("b", "teacher_guided", 1, "retrain_epochs=0", pruned=0.12, pruned_bn=0.60),
        _run("c", "magnitude", 0, "allow_layer_collapse=True, retrain_epochs=0", sparsity=0.95, pruned=0.2, pruned_bn=0.7),
        _run("d", "teacher_guided", 0, "retrain_epochs=0, score_batches=391", pruned=0.9, pruned_bn=0.9, score_batches=391),
        _run("e", "teacher_guided", 0, "", retrain_epochs=3, pruned=0.9, pruned_bn=0.9, retrained=0.8),
    ])
    table = mask_accuracy_table(records)
    assert list(table.index) == ["teacher-guided (ours)", "magnitude"]
    assert table.loc["teacher-guided (ours)", "90 %: pruned"] == "11.0 ± 1.4"
    assert table.loc["teacher-guided (ours)", "90 %: BatchNorm re-estimated"] == "55.0 ± 7.1"
    assert table.loc["magnitude", "95 %: BatchNorm re-estimated"] == "70.0"  # one seed: no spread
    assert table.loc["magnitude", "90 %: pruned"] == "—"
    batches = score_batches_table(records)
    assert list(batches.columns) == ["10 batches", "391 batches"]
    assert batches.loc["teacher-guided (ours)", "391 batches"] == "90.0"


def _save_mask(out_dir: Path, run: str, keep: list[bool]) -> None:
    mask = {"w": torch.tensor(keep)}
    (out_dir / "checkpoints" / "sparse").mkdir(parents=True, exist_ok=True)
    save_sparse({"w": torch.where(mask["w"], 1.0, 0.0)}, mask, out_dir / "checkpoints" / "sparse" / f"{run}.pt")


def test_overlap_matrix_reads_the_committed_masks_and_averages_shared_seeds(tmp_path: Path):
    _save_mask(tmp_path, "ours0", [True, True, False, False])
    _save_mask(tmp_path, "ours1", [True, True, False, False])
    _save_mask(tmp_path, "mag0", [True, False, True, False])  # J = 1/3 with ours0
    _save_mask(tmp_path, "mag1", [True, True, False, False])  # J = 1 with ours1
    records = pd.DataFrame([
        _run("ours0", "teacher_guided", 0, "retrain_epochs=0"), _run("ours1", "teacher_guided", 1, "retrain_epochs=0"),
        _run("mag0", "magnitude", 0, "retrain_epochs=0"), _run("mag1", "magnitude", 1, "retrain_epochs=0"),
    ])
    guided = pd.concat([records, pd.DataFrame([_run("ours0", "ce_gradient", 0, "retrain_epochs=0"), _run("mag1", "teacher_guided", 1, "guide_epochs=0, retrain_epochs=0", pruned_bn=0.3)])])
    table = guiding_table(tmp_path, guided.assign(run=guided["run"].where(guided["method"] != "ce_gradient", "mag0")))
    assert table.loc["teacher-guided (ours)", "guided: shared with the CE gradient (%)"] == "33.3"  # ours0 against mag0, seed 0
    assert table.loc["teacher-guided (ours)", "not guided: BatchNorm re-estimated"] == "30.0"
    assert table.loc["teacher-guided (ours)", "not guided: shared with the CE gradient (%)"] == "—"  # no CE run of seed 1
    assert table.loc["teacher, Fisher form (our extension)", "guided: BatchNorm re-estimated"] == "not run yet"
    matrix = overlap_matrix(tmp_path, records, 0.9)
    assert matrix.loc["teacher-guided (ours)", "teacher-guided (ours)"] == 100
    assert matrix.loc["teacher-guided (ours)", "magnitude"] == pytest.approx(100 * (1 / 3 + 1) / 2)
    assert matrix.loc["magnitude", "teacher-guided (ours)"] == matrix.loc["teacher-guided (ours)", "magnitude"]
    assert "at 90 % sparsity, ours keeps weights in common (Jaccard) 67 % with magnitude." in saliency_text(tmp_path, records)


def test_normalization_tables_split_the_scoring_side_from_the_retraining_side():
    records = pd.DataFrame([
        _run("a", "teacher_guided", 0, "retrain_epochs=0", pruned_bn=0.40),
        _run("b", "teacher_guided", 0, "normalize_logits=False, retrain_epochs=0", pruned_bn=0.60, normalize=False),
        _run("c", "teacher_guided", 0, "retrain_epochs=0, score_temperature=1.0", pruned_bn=0.50, temperature=1.0),
        _run("d", "teacher_guided", 0, "", retrain_epochs=3, retrained=0.75),
        _run("e", "teacher_guided", 0, "retrain_normalize_logits=False", retrain_epochs=3, retrained=0.78, retrain_normalize=False),
        _run("f", "teacher_guided", 0, "alpha=0.5", retrain_epochs=3, retrained=0.99),  # another switch: left out
    ])
    scoring = normalization_table(records)
    assert list(scoring.index) == [("z-scored", 1.0), ("z-scored", 4.0), ("raw", 4.0)]
    assert scoring.loc[("raw", 4.0), "BatchNorm re-estimated"] == "60.0"
    retraining = retraining_normalization_table(records)
    assert retraining.loc["scores from z-scored logits", "retrained on z-scored logits"] == "75.0"
    assert retraining.loc["scores from z-scored logits", "retrained on raw logits"] == "78.0"
    assert "with raw logits at T = 4 (60.0 % with BatchNorm re-estimated); the settings span 40.0 to 60.0 %." in saliency_text(".", records)
    text = saliency_text(".", records)
    assert "Retrained at 90 %, the paper's mask reaches 75.0 % with KD on z-scored logits and 78.0 % on raw logits: the normalization costs most in retraining." in text
    assert text.index("the best mask at 90 % is") < text.index("Retrained at 90 %") < text.index("Ours keeps its best mask")  # answers first


def test_saliency_table_names_loss_and_form_and_the_decision_weighs_the_seed_spread():
    records = pd.DataFrame([
        _run("a", "teacher_guided", 0, "retrain_epochs=0", pruned_bn=0.5), _run("b", "fisher", 0, "retrain_epochs=0", pruned_bn=0.6),
        _run("c", "teacher_guided", 0, retrain_epochs=3, retrained=0.70), _run("d", "teacher_guided", 1, retrain_epochs=3, retrained=0.72),
        _run("e", "teacher_fisher", 0, retrain_epochs=3, retrained=0.80), _run("f", "teacher_fisher", 1, retrain_epochs=3, retrained=0.81),
    ])
    table = saliency_table(records)
    assert table.loc[("teacher's joint loss", "|w·g| summed over batches"), "90 %: retrained"] == "71.0 ± 1.4"
    assert table.loc[("cross-entropy", "½·w²·Σg² (Fisher form)"), "90 %: BatchNorm re-estimated"] == "60.0"
    assert table.loc[("cross-entropy", "|w·Σg| (SNIP form)"), "90 %: retrained"] == "not run yet"
    text = saliency_text(".", records)
    assert "Retrained, the best teacher-guided variant against ours: at 90 %, teacher, Fisher form (our extension) +9.5 points (seed spread 1.4). The decision waits for 95 %." in text
    at_95 = pd.DataFrame([  # ours empties a layer at 95 %: its runs that allow it stand in for the main runs
        _run("g", "teacher_guided", 0, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.60),
        _run("h", "teacher_guided", 1, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.62),
        _run("i", "teacher_fisher", 0, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.70),
        _run("j", "teacher_fisher", 1, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.71),
    ])
    both = pd.concat([records, at_95], ignore_index=True)
    decision = variant_decision_table(both)
    assert decision.loc[(0.95, "teacher, Fisher form (our extension)"), "change (points)"] == pytest.approx(9.5)
    assert earned_variants(both) == ["teacher, Fisher form (our extension)"]
    assert "beats ours by more than the seed spread at 90 % and 95 %: it earns a place as a named method." in saliency_text(".", both)
    close = both.assign(acc_retrained=both["acc_retrained"].where((both["method"] != "teacher_fisher") | (both["sparsity"] != 0.95), 0.612))
    assert earned_variants(close) == []
    assert "No teacher-guided variant beats ours by more than the seed spread at 90 % and 95 %." in saliency_text(".", close)
    assert "the same form without the teacher" not in saliency_text(".", close)  # only an earned variant is compared with it
    without_teacher = pd.concat([both, pd.DataFrame([  # the Fisher form on cross-entropy alone, at both sparsities
        _run("k", "fisher", 0, retrain_epochs=3, retrained=0.79), _run("l", "fisher", 1, retrain_epochs=3, retrained=0.80),
        _run("m", "fisher", 0, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.72),
        _run("n", "fisher", 1, "allow_layer_collapse=True", sparsity=0.95, retrain_epochs=3, retrained=0.72),
    ])], ignore_index=True)
    assert ("Teacher, Fisher form (our extension) against CE, Fisher form (our extension), the same form without the teacher: "
            "+1.0 points at 90 % (seed spread 0.7) and -1.5 points at 95 % (seed spread 0.7).") in saliency_text(".", without_teacher)
    matched = without_teacher.assign(acc_retrained=without_teacher["run"].map({"k": 0.80, "m": 0.70}).fillna(without_teacher["acc_retrained"]))
    assert "+0.5 points at 90 % (seed spread 0.7) and -0.5 points at 95 % (seed spread 1.4): within the seed spread, so the form" in saliency_text(".", matched)


def test_emptied_layers_lists_each_scores_empty_layers_with_their_seeds(tmp_path: Path):
    layers = {"r0": [("conv1", 5), ("layers.8.conv2", 0)], "r1": [("conv1", 5), ("layers.8.conv2", 0)], "m0": [("conv1", 5), ("layers.8.conv2", 3)]}
    for run, kept in layers.items():
        (tmp_path / run).mkdir()
        record = {"sparsity": {"layers": [{"name": f"{n}.weight", "kept": k, "total": 30 if n == "conv1" else 10} for n, k in kept]}}
        if run == "r1":  # made after scores were summarised; r0 before
            record["scores"] = {"layers": [{"name": "conv1.weight", "share": 0.99}, {"name": "layers.8.conv2.weight", "share": 0.01}]}
        (tmp_path / run / RECORD_NAME).write_text(json.dumps(record))
    records = pd.DataFrame([
        _run("r0", "ce_gradient", 0, "allow_layer_collapse=True, retrain_epochs=0", sparsity=0.95),
        _run("r1", "ce_gradient", 1, "allow_layer_collapse=True, retrain_epochs=0", sparsity=0.95),
        _run("m0", "magnitude", 0, "allow_layer_collapse=True, retrain_epochs=0", sparsity=0.95),
    ])
    table = emptied_layers(tmp_path, records)
    assert table.to_dict("records") == [{
        "method": "CE gradient (no teacher)", "sparsity": 0.95, "layer": "layers.8.conv2", "seeds": "0, 1",
        "share of weights (%)": 25.0, "share of summed score (%)": pytest.approx(1.0),
    }]
    assert "At 95 %, CE gradient (no teacher) leaves layers.8.conv2 empty: it holds 25.0 % of the prunable weights, and of their summed score 1.00 % under CE gradient (no teacher)." in saliency_text(tmp_path, records)


def test_study_figures_draw_what_finished_and_say_when_nothing_has(tmp_path: Path):
    from tkdlib.report import layer_density_gap, overlap_heatmaps

    for run, kept in (("ours0", [True, True, False, False]), ("mag0", [True, False, True, False]), ("ours5", [True, False, False, False])):
        _save_mask(tmp_path, run, kept)
        (tmp_path / run).mkdir()
        layers = [{"name": "conv1.weight", "kept": 2, "density": 0.5}, {"name": "fc.weight", "kept": 1 if run == "mag0" else 2, "density": 0.25 if run == "mag0" else 0.5}]
        (tmp_path / run / RECORD_NAME).write_text(json.dumps({"sparsity": {"layers": layers}}))
    records = pd.DataFrame([
        _run("ours0", "teacher_guided", 0, "retrain_epochs=0"), _run("mag0", "magnitude", 0, "retrain_epochs=0"),
        _run("ours5", "teacher_guided", 0, "allow_layer_collapse=True, retrain_epochs=0", sparsity=0.95),
    ]).assign(dataset="cifar10", data="cifar10-jpeg.tar.gz")
    heatmaps = overlap_heatmaps(tmp_path, records)
    titles = [axis.get_title() for axis in heatmaps.axes if axis.get_title()]
    assert titles == ["90 % sparse, before retraining", "95 % sparse, before retraining"]
    gap = layer_density_gap(tmp_path, records)
    (line,) = gap.axes[0].get_lines()[:1]
    assert line.get_label() == "ours − magnitude" and list(line.get_ydata()) == [0.0, 25.0]
    nothing = records.assign(variant="", retrain_epochs=3)
    for figure in (overlap_heatmaps(tmp_path, nothing), layer_density_gap(tmp_path, nothing)):
        assert [text.get_text() for text in figure.axes[0].texts] == ["No mask-only run of the saliency study has finished yet."]
