"""Report helpers that the book's captions and text rely on."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tkdlib.config import Config
from tkdlib.data import DATASET_NAMES
from tkdlib.experiment import RECORD_NAME
from tkdlib.profile import Profile, load_profile
from tkdlib.report import (
    PAIRED_COLUMNS,
    ablation_matrix,
    ablation_plot,
    ablation_table,
    ablation_text,
    by_sparsity_text,
    comparison_sparsity,
    efficiency_table,
    failed_runs,
    figure_source,
    page_caption,
    headline,
    headline_text,
    iterative_cost_text,
    per_seed,
    readable,
    results_table,
    switch_effects,
    thinnest_layers,
)
from tkdlib.report.records import DATASET_TITLES


def test_figure_source_names_profile_runs_seeds_and_data():
    records = pd.DataFrame(
        {"seed": [1, 0, 1], "variant": [""] * 3, "dataset": ["cifar10"] * 3, "data": ["cifar10-jpeg.tar.gz (JPEG re-encoding of CIFAR-10)"] * 3}
    )
    text = figure_source(records, "cpu")
    assert text.startswith("Drawn from the 3 finished runs of profile `cpu` (seeds 0, 1;")
    assert "JPEG re-encoding" in text
    assert "the 2 finished runs of profile `cpu` (seed 1;" in figure_source(records[records["seed"] == 1], "cpu")
    assert "the 1 finished run of" in figure_source(records[records["seed"] == 0], "cpu")


def test_page_caption_describes_the_profile_and_counts_its_runs_against_its_grid():
    grid = [Config(seed=seed) for seed in range(3)]
    records = pd.DataFrame({"run": [config.key() for config in grid], "dataset": ["tinyimagenet"] * 3, "data": ["tinyimagenet-200 archives"] * 3})
    profile = SimpleNamespace(name="tin", description="Long schedules", configs=lambda: grid)
    assert page_caption(profile, records) == "*Long schedules.* Profile `tin`, on TinyImageNet-200: all 3 runs its grid plans have finished."
    assert page_caption(profile, records.iloc[:2]).endswith(": 2 of the 3 runs its grid plans have finished.")
    assert page_caption(profile, records.iloc[:1]).endswith(": 1 of the 3 runs its grid plans has finished.")
    dropped = records.assign(run=["a retired cell", *records["run"][1:]])  # a record of a cell the grid no longer plans
    assert page_caption(profile, dropped).endswith(": 2 of the 3 runs its grid plans have finished, and 1 outside it.")


def test_every_dataset_has_a_title_for_readers():
    assert set(DATASET_TITLES) == set(DATASET_NAMES)


def _records(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """Main-comparison records (method, sparsity, retrained accuracy) with the columns headline reads."""
    return pd.DataFrame(
        [
            {"method": m, "sparsity": s, "seed": 0, "variant": "", "acc_retrained": a, "acc_teacher": 0.9, "acc_dense": 0.85,
             "total_images": 1000 * (5 if m == "imp" else 1), "total_flops": 2e12 * (6 if m == "imp" else 1),
             "reference_rate": math.nan, "scaled_pruning_seconds": math.nan, "teacher_sha256": None, "dense_sha256": None}
            for m, s, a in rows
        ]
    )


def _profile(tmp_path: Path, methods: list[str], sparsities: list[float]) -> Profile:
    """A profile whose main comparison runs `methods` at `sparsities`."""
    path = tmp_path / "grid.toml"
    path.write_text(f'[config]\ndataset = "cifar10"\n[[grid]]\nmethod = {methods!r}\nsparsity = {sparsities!r}\n'.replace("'", '"'))
    return load_profile(path)


EVERY_METHOD = ["teacher_guided", "ce_gradient", "magnitude", "random", "snip", "grasp", "synflow", "imp", "colt", "epsd"]


def test_partial_grid_compares_where_most_methods_finished(tmp_path: Path):
    records = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("snip", 0.9, 0.79), ("teacher_guided", 0.95, 0.7)])
    assert comparison_sparsity(records) == 0.9
    numbers = headline(records)
    assert numbers["sparsity"] == 90 and numbers["methods_compared"] == 3 and numbers["ours_rank"] == 2
    assert abs(numbers["gap_to_best_other"] - (-2.0)) < 1e-9
    text = headline_text(records, _profile(tmp_path, EVERY_METHOD, [0.9, 0.95]))
    assert "teacher-guided pruning reaches 80.0 % after retraining. The best of the other methods, magnitude, reaches 82.0 %." in text
    assert "Ours ranks 2 of 3, 2.0 points behind." in text
    assert "Not yet run at 90 % sparsity: CE gradient" in text
    assert "IMP (iterative, rewinding)" in text and "images_vs_ours_imp" not in numbers
    assert "Iterative magnitude pruning has not run" not in text  # named once, in the list of what has not run


def test_headline_counts_imp_cost_once_both_ran(tmp_path: Path):
    profile = _profile(tmp_path, EVERY_METHOD, [0.5, 0.9])
    records = _records([("teacher_guided", 0.9, 0.80), ("imp", 0.9, 0.81), ("magnitude", 0.5, 0.9)])
    numbers = headline(records)
    assert numbers["images_vs_ours_imp"] == 5 and numbers["flops_vs_ours_imp"] == 6
    assert "costs 6.00 × the FLOPs of teacher-guided one-shot pruning and 5.00 × the images" in iterative_cost_text(records, profile)
    assert "wall time" not in iterative_cost_text(records, profile) and "seconds_vs_ours_imp" not in numbers  # records predating the machine's speed
    timed = records.assign(scaled_pruning_seconds=[300.0, 1200.0, 50.0])
    assert headline(timed)["seconds_vs_ours_imp"] == 4
    assert "Its pruning rounds take 4.00 × the wall time of our guiding, scoring and retraining" in iterative_cost_text(timed, profile)
    assert "The best of the other methods, IMP (iterative, rewinding), reaches 81.0 %. Ours ranks 2 of 2, 1.0 points behind." in headline_text(records, profile)
    ahead = _records([("teacher_guided", 0.9, 0.83), ("magnitude", 0.9, 0.82), ("snip", 0.9, 0.75)])
    assert "The best of the other methods, magnitude, reaches 82.0 %. Ours ranks 1 of 3, 1.0 points ahead." in headline_text(ahead, profile)
    own = pd.concat([ahead, _records([("my_score", 0.9, 0.86)])], ignore_index=True)  # a registered method of one's own
    assert "The best of the other methods, my_score, reaches 86.0 %. Ours ranks 2 of 4, 3.0 points behind." in headline_text(own, profile)


def test_headline_names_the_methods_more_accurate_than_ours_for_fewer_flops(tmp_path: Path):
    profile = _profile(tmp_path, EVERY_METHOD, [0.9])
    records = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("snip", 0.9, 0.79), ("imp", 0.9, 0.83), ("epsd", 0.9, 0.81)])
    records.loc[records["method"] == "teacher_guided", "total_flops"] *= 2  # ours pays for a guiding epoch the others skip
    records.loc[records["method"] == "epsd", "total_flops"] /= 5
    numbers = headline(records)
    assert numbers["flops_vs_ours_magnitude"] == 0.5 and numbers["flops_vs_ours_epsd"] == pytest.approx(0.1) and numbers["flops_vs_ours_imp"] == 3
    text = headline_text(records, profile)
    assert "More accurate for fewer FLOPs than ours: magnitude at 0.50 × the FLOPs and EPSD (our re-implementation) at 0.10 × the FLOPs." in text
    assert "SNIP at" not in text and "IMP (iterative, rewinding) at" not in text  # less accurate; costlier
    costly = records[records["method"].isin(["teacher_guided", "imp", "snip"])]
    assert "None of the more accurate methods costs fewer FLOPs." in headline_text(costly, profile)
    first = records[records["method"].isin(["teacher_guided", "snip"])]
    assert "fewer FLOPs" not in headline_text(first, profile)


def test_headline_says_when_ours_is_missing_or_alone(tmp_path: Path):
    profile = _profile(tmp_path, EVERY_METHOD, [0.9])
    assert "has not finished at 90 % sparsity yet" in headline_text(_records([("magnitude", 0.9, 0.8)]), profile)
    assert "No other method has finished there yet." in headline_text(_records([("teacher_guided", 0.9, 0.8)]), profile)


def test_headline_names_only_what_the_profile_plans(tmp_path: Path):
    profile = _profile(tmp_path, ["teacher_guided", "ce_gradient", "magnitude", "snip"], [0.9, 0.95])
    records = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    text = headline_text(records, profile)
    assert "Not yet run at 90 % sparsity: CE gradient (no teacher) and SNIP." in text
    assert "This profile does not run iterative magnitude pruning at 90 % sparsity." in text
    assert "Iterative magnitude pruning has not run" in iterative_cost_text(records, _profile(tmp_path, ["teacher_guided", "imp"], [0.9]))


def _layer(name: str, kept: int, total: int) -> dict:
    return {"name": f"{name}.weight", "kept": kept, "total": total, "density": kept / total}


def test_thinnest_layers_names_each_methods_emptiest_layer_at_the_comparison_sparsity(tmp_path: Path):
    masks = {
        "tg90": [_layer("conv1", 400, 432), _layer("layers.8.conv2", 20, 36864), _layer("fc", 600, 640)],
        "mag90": [_layer("conv1", 333, 432), _layer("layers.8.conv2", 509, 36864), _layer("fc", 5, 640)],
        "tg50": [_layer("conv1", 1, 432), _layer("layers.8.conv2", 20000, 36864), _layer("fc", 600, 640)],
    }
    for run, layers in masks.items():
        (tmp_path / run).mkdir()
        (tmp_path / run / RECORD_NAME).write_text(json.dumps({"sparsity": {"layers": layers}}))
    records = _records([("teacher_guided", 0.9, 0.8), ("magnitude", 0.9, 0.82), ("teacher_guided", 0.5, 0.9)])
    records["run"] = ["tg90", "mag90", "tg50"]
    table = thinnest_layers(tmp_path, records)
    assert list(table.index) == ["teacher-guided (ours)", "magnitude"]  # thinnest first; the 50 % run is not at the comparison sparsity
    assert table.loc["teacher-guided (ours)", "thinnest layer"] == "layers.8.conv2"
    assert (table.loc["teacher-guided (ours)", "kept"], table.loc["teacher-guided (ours)", "of"]) == (20, 36864)
    assert table.loc["magnitude", "thinnest layer"] == "fc" and table.loc["magnitude", "density (%)"] == 0.78


def test_results_table_says_which_cells_have_not_run():
    records = _records([("teacher_guided", 0.9, 0.801), ("magnitude", 0.9, 0.82), ("teacher_guided", 0.95, 0.7)])
    table = results_table(records)
    assert table.loc["magnitude", "95 % sparse"] == "not run yet"
    assert table.loc["teacher-guided (ours)", "90 % sparse"] == "80.1"
    assert list(table.index) == ["teacher-guided (ours)", "magnitude"]  # ours first, not alphabetical


def test_results_table_gives_mean_and_std_over_seeds_where_several_ran():
    seed_0 = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    records = pd.concat([seed_0, _records([("teacher_guided", 0.9, 0.78)]).assign(seed=1)], ignore_index=True)
    table = results_table(records)
    assert table.loc["teacher-guided (ours)", "90 % sparse"] == "79.0 ± 1.4"  # std of 80 and 78
    assert table.loc["magnitude", "90 % sparse"] == "82.0"


def test_by_sparsity_text_names_the_best_method_and_ours_at_each_sparsity():
    records = _records([
        ("teacher_guided", 0.5, 0.83), ("magnitude", 0.5, 0.82),
        ("teacher_guided", 0.9, 0.75), ("magnitude", 0.9, 0.79), ("snip", 0.9, 0.76),
        ("magnitude", 0.98, 0.56), ("epsd", 0.98, 0.62),
    ])
    text = by_sparsity_text(records)
    assert text.startswith("- At 50 % sparsity, teacher-guided (ours) is the most accurate of the 2 methods finished (83.0 %), 1.0 points ahead of magnitude.\n- At 90 %")
    assert "At 90 % sparsity, magnitude is the most accurate of the 3 methods finished (79.0 %); teacher-guided pruning ranks 3 with 75.0 %, 4.0 points behind." in text
    assert text.endswith("(62.0 %); teacher-guided pruning has not finished there.")
    failed = pd.DataFrame([{"method": "teacher_guided", "sparsity": 0.98, "seed": 0, "variant": "", "error": "LayerCollapseError"}])
    assert by_sparsity_text(records, failed).endswith("(62.0 %); teacher-guided pruning failed there.")
    close = _records([("teacher_guided", 0.5, 0.8292), ("ce_gradient", 0.5, 0.8294)])
    assert by_sparsity_text(close).endswith("teacher-guided pruning ranks 2 with 82.9 %, 0.02 points behind.")
    assert by_sparsity_text(_records([("teacher_guided", 0.9, 0.75)])) == "- At 90 % sparsity, only teacher-guided (ours) has finished (75.0 %)."
    assert by_sparsity_text(_records([("magnitude", 0.98, 0.56)]), failed) == "- At 98 % sparsity, only magnitude has finished (56.0 %); teacher-guided pruning failed there."
    seeds = pd.concat([_records([("teacher_guided", 0.9, 0.75), ("magnitude", 0.9, 0.79)]).assign(seed=seed) for seed in (0, 1)])
    uneven = pd.concat([seeds, _records([("imp", 0.9, 0.80)])])
    assert by_sparsity_text(uneven) == (
        "- At 90 % sparsity, IMP (iterative, rewinding) is the most accurate of the 3 methods finished (80.0 % on 1 seed); "
        "teacher-guided pruning ranks 3 with 75.0 % over 2 seeds, 5.0 points behind."
    )
    assert "seed" not in by_sparsity_text(seeds)
    tie = _records([("magnitude", 0.9, 0.79), ("teacher_guided", 0.9, 0.79), ("snip", 0.9, 0.70)])
    for order in (tie, tie.iloc[::-1]):
        assert by_sparsity_text(order).endswith("(79.0 %); teacher-guided pruning ties it.")


def test_by_sparsity_text_gives_ours_under_a_layer_rule_where_it_failed_without_one():
    failed = pd.DataFrame([{"method": "teacher_guided", "sparsity": 0.95, "seed": 0, "variant": "", "error": "LayerCollapseError"}])
    records = pd.concat([
        _records([("magnitude", 0.95, 0.81)]),
        _records([("teacher_guided", 0.95, 0.808), ("ce_gradient", 0.95, 0.809)]).assign(variant="layer_floor=0.005"),
        _records([("teacher_guided", 0.95, 0.795)]).assign(variant="allow_layer_collapse=True"),
    ])
    assert by_sparsity_text(records, failed) == (
        "- At 95 % sparsity, only magnitude has finished (81.0 %); teacher-guided pruning failed there; "
        "with the per-layer floor 0.5 % it reaches 80.8 % (CE gradient (no teacher) with the same rule: 80.9 %); "
        "with the collapse allowed it reaches 79.5 %."
    )


def test_by_sparsity_text_tells_a_sparsity_run_only_under_a_layer_rule_from_that_rule():
    floor = _records([("teacher_guided", 0.98, 0.713), ("magnitude", 0.98, 0.729), ("ce_gradient", 0.98, 0.717)]).assign(variant="layer_floor=0.005")
    records = pd.concat([_records([("magnitude", 0.9, 0.85)]), floor, _records([("magnitude", 0.98, 0.70)]).assign(variant="allow_layer_collapse=True")])
    assert by_sparsity_text(records).splitlines()[1] == (
        "- At 98 % sparsity, with the per-layer floor 0.5 % (no run without a layer rule has finished there), magnitude is the "
        "most accurate of the 3 methods finished (72.9 %); teacher-guided pruning ranks 3 with 71.3 %, 1.6 points behind."
    )
    failed = pd.DataFrame([{"method": "teacher_guided", "sparsity": 0.98, "seed": 0, "variant": "layer_floor=0.005", "error": "NonFiniteLossError"}])
    assert by_sparsity_text(records[records["method"] != "teacher_guided"], failed).endswith(
        "(72.9 %); teacher-guided pruning failed there."
    )


def _ablation_profile(tmp_path: Path) -> Profile:
    path = tmp_path / "abl.toml"
    path.write_text(
        '[config]\ndataset = "cifar10"\n'
        '[[grid]]\nmethod = ["teacher_guided", "magnitude"]\nsparsity = [0.9]\n'
        '[[grid]]\nsparsity = [0.9]\nnormalize_logits = [false]\n'
        '[[grid]]\nsparsity = [0.9]\nguide_epochs = [0]\n'
        '[[grid]]\nsparsity = [0.9]\ngamma = [0.0, 1.0]\n'
        '[[grid]]\nsparsity = [0.9]\ngamma = [0.0]\nnormalize_logits = [false]\n'
        '[[grid]]\nmethod = ["magnitude"]\nsparsity = [0.9]\nnormalize_logits = [false]\n'
    )
    return load_profile(path)


def _with_variants(main: pd.DataFrame, variants: list[tuple[str, float]], method: str = "teacher_guided") -> pd.DataFrame:
    """`main` plus runs of `method` at 90 % under each (variant, retrained accuracy)."""
    rows = [{**main.iloc[0].to_dict(), "method": method, "sparsity": 0.9, "variant": name, "acc_retrained": acc} for name, acc in variants]
    return pd.concat([main, pd.DataFrame(rows)], ignore_index=True)


def test_ablation_text_orders_changes_names_missing_variants_and_the_noise_it_cannot_judge(tmp_path: Path):
    profile = _ablation_profile(tmp_path)
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    records = _with_variants(main, [("normalize_logits=False", 0.805), ("guide_epochs=0", 0.77)])
    text = ablation_text(records, profile)
    assert text.startswith("Each ablation changes teacher-guided (ours) at 90 % sparsity unless it names another method or sparsity.")
    assert "guide_epochs=0 -3.0 (77.0 % against 80.0 %) and normalize_logits=False +0.5 (80.5 % against 80.0 %)." in text
    assert "4 planned variants have not run yet." in text  # too many to name: the table lists them
    on_magnitude = _with_variants(records, [("normalize_logits=False", 0.84)], method="magnitude")
    assert "guide_epochs=0 -3.0 (77.0 % against 80.0 %), normalize_logits=False for magnitude at 90 % +2.0 (84.0 % against 82.0 %) and normalize_logits=False +0.5" in ablation_text(on_magnitude, profile)
    assert "Not run yet: gamma=0.0, gamma=1.0 and gamma=0.0 + normalize_logits=False." in ablation_text(on_magnitude, profile)  # few: named
    assert "no second seed has run yet" in text
    two_seeds = _with_variants(pd.concat([main, main.iloc[[0]].assign(seed=1, acc_retrained=0.79)], ignore_index=True), [("guide_epochs=0", 0.77)])
    assert "seeds landed up to 1.0 points apart; 1 of the 1 changes exceed that." in ablation_text(two_seeds, profile)


def test_switch_effects_split_a_combined_variant_into_its_switches(tmp_path: Path):
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    singles = _with_variants(main, [("normalize_logits=False", 0.805), ("gamma=0.0", 0.79)])
    assert switch_effects(singles).empty  # no variant sets two switches
    records = _with_variants(singles, [("gamma=0.0, normalize_logits=False", 0.78)])
    effects = switch_effects(records).set_index("switch")
    assert effects.loc["gamma=0.0", ["alongside", "reference", "change"]].tolist() == ["normalize_logits=False", 80.5, -2.5]
    assert effects.loc["normalize_logits=False", ["alongside", "reference", "change"]].tolist() == ["gamma=0.0", 79.0, -1.0]
    magnitude_only = _with_variants(records[records["variant"] != "gamma=0.0"], [("gamma=0.0", 0.79)], method="magnitude")
    assert list(switch_effects(magnitude_only)["switch"]) == ["gamma=0.0"]  # the partner must share method and sparsity


def test_a_variant_is_measured_against_the_main_runs_of_its_own_seeds(tmp_path: Path):
    first = _records([("teacher_guided", 0.9, 0.80)])
    main = pd.concat([first, first.assign(seed=1, acc_retrained=0.76), first.assign(seed=2, acc_retrained=0.78)], ignore_index=True)
    one_seed = _with_variants(main, [("guide_epochs=0", 0.77)])  # seed 0, whose main run scored 80 %
    assert ablation_table(one_seed).loc["guide_epochs=0", PAIRED_COLUMNS].tolist() == [77.0, 80.0, -3.0, 1]  # not against the three seeds' 78 %
    variant = one_seed.iloc[[-1]]
    two_seeds = pd.concat([one_seed, variant.assign(seed=1, acc_retrained=0.75)], ignore_index=True)
    assert ablation_table(two_seeds).loc["guide_epochs=0", PAIRED_COLUMNS].tolist() == [76.0, 78.0, -2.0, 2]
    assert "guide_epochs=0 -2.0 (76.0 % against 78.0 %, 2 seeds)" in ablation_text(two_seeds, _ablation_profile(tmp_path))
    unpaired = ablation_table(pd.concat([main, variant.assign(seed=5)], ignore_index=True)).loc["guide_epochs=0"]
    assert unpaired["accuracy"] == 77.0 and unpaired["seeds"] == 1 and pd.isna(unpaired["reference"]) and pd.isna(unpaired["change"])
    combined_elsewhere = pd.concat([one_seed, variant.assign(variant="gamma=0.0, guide_epochs=0", seed=1, acc_retrained=0.74)], ignore_index=True)
    assert switch_effects(combined_elsewhere).empty  # its partner guide_epochs=0 ran on seed 0 only
    combined = pd.concat([combined_elsewhere, variant.assign(variant="gamma=0.0, guide_epochs=0", acc_retrained=0.76)], ignore_index=True)
    assert switch_effects(combined).set_index("switch").loc["gamma=0.0", PAIRED_COLUMNS].tolist() == [76.0, 77.0, -1.0, 1]


def test_ablation_matrix_puts_each_method_under_each_variant_beside_its_main_run(tmp_path: Path):
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("random", 0.9, 0.6), ("magnitude", 0.5, 0.9)])
    assert ablation_matrix(main).empty  # no variant ran
    records = _with_variants(_with_variants(main, [("retrain_with_kd=False", 0.83), ("gamma=0.0", 0.79)]), [("retrain_with_kd=False", 0.85)], "magnitude")
    matrix = ablation_matrix(records)
    assert list(matrix.columns) == ["teacher-guided (ours)", "magnitude"]  # only methods some variant ran, in the book's order
    assert list(matrix.index) == [(0.9, "none (main comparison)", "0"), (0.9, "gamma=0.0", "0"), (0.9, "retrain_with_kd=False", "0")]
    assert matrix.loc[(0.9, "retrain_with_kd=False", "0")].tolist() == [83.0, 85.0]
    assert matrix.loc[(0.9, "none (main comparison)", "0")].tolist() == [80.0, 82.0]
    assert pd.isna(matrix.loc[(0.9, "gamma=0.0", "0"), "magnitude"])
    custom = _with_variants(pd.concat([records, _records([("my_score", 0.9, 0.7)])], ignore_index=True), [("gamma=0.0", 0.71)], "my_score")
    assert list(ablation_matrix(custom).columns) == ["teacher-guided (ours)", "magnitude", "my_score"]  # a registered method of one's own comes last, not dropped


def test_each_row_of_the_ablation_matrix_averages_the_seeds_all_its_methods_ran():
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    records = _with_variants(_with_variants(main, [("retrain_with_kd=False", 0.83)]), [("retrain_with_kd=False", 0.85)], "magnitude")
    second_seed = records.assign(seed=2, acc_retrained=records["acc_retrained"] - 0.02)
    only_ours = second_seed[(second_seed["method"] == "teacher_guided") | (second_seed["variant"] == "")]
    matrix = ablation_matrix(pd.concat([records, only_ours], ignore_index=True))
    assert matrix.loc[(0.9, "none (main comparison)", "0, 2")].tolist() == [79.0, 81.0]
    assert matrix.loc[(0.9, "retrain_with_kd=False", "0")].tolist() == [83.0, 85.0]  # not ours' two seeds against magnitude's one
    apart = pd.concat([records[records["method"] == "magnitude"], only_ours[only_ours["method"] == "teacher_guided"]], ignore_index=True)
    assert ablation_matrix(apart).loc[(0.9, "retrain_with_kd=False", "none shared")].tolist() == [81.0, 85.0]


def test_a_variant_whose_main_run_failed_is_given_alone_not_called_unrun(tmp_path: Path):
    path = tmp_path / "collapse.toml"
    path.write_text(
        '[config]\ndataset = "cifar10"\n'
        '[[grid]]\nmethod = ["teacher_guided", "magnitude"]\nsparsity = [0.9, 0.98]\n'
        '[[grid]]\nsparsity = [0.9]\nguide_epochs = [0]\n'
        '[[grid]]\nsparsity = [0.98]\nallow_layer_collapse = [true]\n'
    )
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("magnitude", 0.98, 0.56)])  # ours at 98 % failed
    records = _with_variants(main, [("guide_epochs=0", 0.77)])
    collapsed = {**records.iloc[0].to_dict(), "sparsity": 0.98, "variant": "allow_layer_collapse=True", "acc_retrained": 0.61}
    records = pd.concat([records, pd.DataFrame([collapsed])], ignore_index=True)
    text = ablation_text(records, load_profile(path))
    assert "guide_epochs=0 -3.0 (77.0 % against 80.0 %)." in text
    assert "Without a finished main run to compare with: allow_layer_collapse=True for teacher-guided (ours) at 98 % 61.0 %." in text
    assert "Not run yet" not in text
    assert pd.isna(ablation_table(records).loc["allow_layer_collapse=True", "change"])
    figure = ablation_plot(records.assign(dataset="cifar10", data="cifar10-jpeg.tar.gz (JPEG re-encoding of CIFAR-10)"))
    assert [tick.get_text() for tick in figure.axes[0].get_yticklabels()] == ["guide_epochs=0 (teacher-guided (ours), 90 %)"]  # no bar without a change


def test_accuracy_figure_draws_floor_runs_as_open_markers_on_the_log_axis():
    from tkdlib.report import accuracy_vs_remaining

    main = _records([("teacher_guided", 0.9, 0.80), ("teacher_guided", 0.95, 0.70), ("magnitude", 0.9, 0.82)])
    floored = _records([("teacher_guided", 0.98, 0.58)]).assign(variant="layer_floor=0.005")
    collapsed = _records([("magnitude", 0.98, 0.40)]).assign(variant="allow_layer_collapse=True")  # not drawn: the table has it
    records = pd.concat([main, floored, collapsed], ignore_index=True).assign(dataset="cifar10", data="cifar10-jpeg.tar.gz")
    axes = accuracy_vs_remaining(records).axes[0]
    labels = axes.get_legend_handles_labels()[1]
    assert labels == ["dense teacher", "dense student", "teacher-guided (ours)", "magnitude", "open marker: per-layer floor"]
    points = {(round(x, 1), round(y, 1)) for line in axes.lines for x, y in line.get_xydata()}
    assert (2.0, 58.0) in points and (2.0, 40.0) not in points
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["10 %", "5 %", "2 %"]


def test_ablation_text_without_reference_or_planned_variants(tmp_path: Path):
    profile = _ablation_profile(tmp_path)
    only_variant = _with_variants(_records([("magnitude", 0.9, 0.82)]), [("guide_epochs=0", 0.77)])
    assert ablation_text(only_variant, profile) == "No ablation has finished beside its reference run yet (6 planned)."
    plain = tmp_path / "plain.toml"
    plain.write_text('[config]\ndataset = "cifar10"\n[[grid]]\nmethod = ["magnitude"]\nsparsity = [0.9]\n')
    assert ablation_text(_records([("magnitude", 0.9, 0.82)]), load_profile(plain)) == "This profile runs no ablations."


def test_ablation_text_takes_ours_as_the_usual_method_when_methods_run_equally_many_ablations(tmp_path: Path):
    path = tmp_path / "tie.toml"  # one switch for magnitude (sorted first), one for ours
    path.write_text(
        '[config]\ndataset = "cifar10"\n'
        '[[grid]]\nmethod = ["teacher_guided", "magnitude"]\nsparsity = [0.9]\n'
        '[[grid]]\nmethod = ["teacher_guided", "magnitude"]\nsparsity = [0.9]\nretrain_with_kd = [false]\n'
    )
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    records = _with_variants(_with_variants(main, [("retrain_with_kd=False", 0.83)]), [("retrain_with_kd=False", 0.84)], method="magnitude")
    text = ablation_text(records, load_profile(path))
    assert text.startswith("Each ablation changes teacher-guided (ours) at 90 % sparsity")
    assert "retrain_with_kd=False +3.0 (83.0 % against 80.0 %) and retrain_with_kd=False for magnitude at 90 % +2.0 (84.0 % against 82.0 %)." in text


def test_headline_averages_each_seeds_teacher_once_and_weighs_the_gap_against_the_seed_spread(tmp_path: Path):
    profile = _profile(tmp_path, ["teacher_guided", "magnitude", "snip"], [0.9])
    seed_0 = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("snip", 0.9, 0.79)])
    seed_1 = _records([("teacher_guided", 0.9, 0.78), ("magnitude", 0.9, 0.83)]).assign(seed=1, acc_teacher=0.8, acc_dense=0.75)
    records = pd.concat([seed_0, seed_1], ignore_index=True)
    numbers = headline(records)
    # seed 0 has three runs, seed 1 two: the teacher's accuracy is (90 + 80) / 2, not weighted by runs
    assert abs(numbers["teacher_accuracy"] - 85.0) < 1e-9 and abs(numbers["dense_accuracy"] - 80.0) < 1e-9
    assert numbers["seeds_teacher_guided"] == 2 and numbers["seeds_snip"] == 1
    assert abs(numbers["spread_teacher_guided"] - 2.0) < 1e-9 and numbers["spread_snip"] == 0.0
    text = headline_text(records, profile)
    assert text.startswith("The dense teachers reach 80.0–90.0 % test accuracy, the dense students 75.0–85.0 % (seeds 0 and 1).")
    # ours 79.0 vs magnitude 82.5: a 3.5-point gap against seeds 2.0 and 1.0 points apart
    assert "Across seeds, the accuracy spans ours 2.0 and magnitude 1.0 points: the gap is wider than that." in text
    close = records.copy()
    close.loc[close["method"] == "magnitude", "acc_retrained"] = [0.80, 0.79]
    assert "the gap is no wider than that." in headline_text(close, profile)
    assert "Across seeds" not in headline_text(seed_0, profile) and headline_text(seed_0, profile).startswith("The dense teacher reaches 90.0 %")
    shared = pd.concat([seed_0, seed_1.assign(acc_teacher=0.9)], ignore_index=True).assign(teacher_sha256="t0")
    assert headline_text(shared, profile).startswith(
        "One dense teacher serves seeds 0 and 1 and reaches 90.0 % test accuracy; the dense students reach 75.0–85.0 %."
    )


def test_per_seed_refuses_runs_of_one_seed_that_used_different_teachers():
    records = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    assert per_seed(records, "acc_teacher").to_dict() == {0: 0.9}
    records.loc[1, "acc_teacher"] = 0.88  # a retrained teacher that came out different
    with pytest.raises(ValueError, match=r"seed 0 disagree on acc_teacher \(88.00%, 90.00%\)"):
        headline(records)


def test_per_seed_groups_runs_by_the_sha256_of_their_checkpoints():
    records = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)]).assign(teacher_sha256="a" * 64, dense_sha256="b" * 64)
    records.loc[1, "acc_teacher"] = 0.9001  # one checkpoint, evaluated on another machine: still one lineage
    assert per_seed(records, "acc_teacher").to_dict() == {0: 0.9}
    records.loc[1, "dense_sha256"] = "c" * 64  # the dense student was lost and trained again
    with pytest.raises(ValueError, match=r"seed 0 used different dense checkpoints \(sha256 bbbbbbbbbbbb, cccccccccccc…\)"):
        per_seed(records, "acc_dense")


def test_failed_runs_lists_each_failed_record_with_its_seed_and_error(tmp_path: Path):
    config = {"method": "ce_gradient", "sparsity": 0.95, "seed": 1}
    error = "LayerCollapseError: At sparsity 0.95 these layers would keep no weight: ['layers.8.conv2.weight']."
    for run, record in {
        "failed1": {"status": "failed", "config": config, "config_hash": "failed1", "error": error},
        "finished": {"status": "finished", "config": {**config, "seed": 0}, "config_hash": "finished"},
    }.items():
        (tmp_path / run).mkdir()
        (tmp_path / run / RECORD_NAME).write_text(json.dumps(record))
    table = failed_runs(tmp_path)
    assert table.to_dict("records") == [{"run": "failed1", "method": "ce_gradient", "sparsity": 0.95, "seed": 1, "error": error}]


def test_results_table_marks_cells_where_a_main_comparison_run_failed(tmp_path: Path):
    profile = _profile(tmp_path, ["teacher_guided", "ce_gradient"], [0.9, 0.95])
    records = _records([("teacher_guided", 0.9, 0.80), ("ce_gradient", 0.95, 0.67)])
    failed = pd.DataFrame(
        [
            {"run": "a", "method": "ce_gradient", "sparsity": 0.95, "seed": 1, "variant": "", "error": "LayerCollapseError"},
            {"run": "b", "method": "teacher_guided", "sparsity": 0.95, "seed": 0, "variant": "", "error": "LayerCollapseError"},
            {"run": "c", "method": "teacher_guided", "sparsity": 0.95, "seed": 1, "variant": "", "error": "LayerCollapseError"},
            {"run": "d", "method": "teacher_guided", "sparsity": 0.9, "seed": 0, "variant": "gamma=0.0", "error": "ValueError"},
        ]
    )
    table = results_table(records, failed)
    assert table.loc["CE gradient (no teacher)", "95 % sparse"] == "67.0 (seed 1 failed)"
    assert table.loc["teacher-guided (ours)", "95 % sparse"] == "seeds 0 and 1 failed"
    assert table.loc["teacher-guided (ours)", "90 % sparse"] == "80.0"  # the failed ablation is not the main comparison
    assert table.loc["CE gradient (no teacher)", "90 % sparse"] == "not run yet"
    assert results_table(records, failed.iloc[:0]).equals(results_table(records))
    assert list(failed_runs(tmp_path, profile).columns) == ["run", "method", "sparsity", "seed", "variant", "error"]


def test_results_table_gives_each_layer_rule_its_own_column_beside_its_sparsity():
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82), ("magnitude", 0.98, 0.56)])
    ruled = _records([("teacher_guided", 0.98, 0.58), ("teacher_guided", 0.98, 0.60), ("magnitude", 0.98, 0.55), ("teacher_guided", 0.98, 0.50)]).assign(
        seed=[0, 1, 0, 0], variant=["layer_floor=0.005", "layer_floor=0.005", "layer_floor=0.005", "allow_layer_collapse=True"])
    other = _records([("teacher_guided", 0.98, 0.99)]).assign(variant="layer_floor=0.005, alpha=0.5")  # another switch too: an ablation only
    table = results_table(pd.concat([main, ruled, other], ignore_index=True))
    assert list(table.columns) == ["90 % sparse", "98 % sparse", "98 % sparse, collapse allowed", "98 % sparse, per-layer floor 0.5 %"]
    assert table.loc["teacher-guided (ours)"].tolist() == ["80.0", "not run yet", "50.0", "59.0 ± 1.4"]
    assert table.loc["magnitude"].tolist() == ["82.0", "56.0", "—", "55.0"]


def test_efficiency_table_compares_the_first_seeds_runs_only_and_scales_their_seconds_to_one_machine_speed():
    seed_0 = _records([("teacher_guided", 0.9, 0.80), ("imp", 0.9, 0.81), ("magnitude", 0.9, 0.82)]).assign(
        pruning_seconds=[100.0, 600.0, 50.0], reference_rate=[500.0, 1500.0, math.nan],  # ours on a slow sitting; magnitude's record predates the rate
        scaled_pruning_seconds=[50.0, 900.0, math.nan])
    seed_1 = _records([("teacher_guided", 0.9, 0.78)]).assign(seed=1, pruning_seconds=40.0, reference_rate=1000.0, scaled_pruning_seconds=40.0)
    table = efficiency_table(pd.concat([seed_0, seed_1], ignore_index=True))
    assert list(table.index) == ["teacher-guided (ours)", "magnitude", "IMP (iterative, rewinding)"]
    assert table["pruning seconds"].tolist() == [100.0, 50.0, 600.0] and table["accuracy (%)"].tolist() == [80.0, 82.0, 81.0]
    assert table["pruning seconds at 1,000 images/s"].tolist()[::2] == [50.0, 900.0] and math.isnan(table["pruning seconds at 1,000 images/s"].iloc[1])
    assert table["images vs ours"].tolist()[::2] == [1.0, 5.0] and table["FLOPs vs ours"].tolist()[::2] == [1.0, 6.0]


def test_ablation_text_names_the_largest_changes_and_leaves_the_rest_to_the_table(tmp_path: Path):
    main = _records([("teacher_guided", 0.9, 0.80), ("magnitude", 0.9, 0.82)])
    records = _with_variants(main, [("normalize_logits=False", 0.805), ("guide_epochs=0", 0.77), ("gamma=0.0", 0.79), ("gamma=1.0", 0.84)])
    text = ablation_text(records, _ablation_profile(tmp_path))
    assert "(points): gamma=1.0 +4.0 (84.0 % against 80.0 %), guide_epochs=0 -3.0 (77.0 % against 80.0 %) and gamma=0.0 -1.0 (79.0 % against 80.0 %)." in text
    assert "The ablation table lists the other 1." in text and "normalize_logits=False +0.5" not in text


def test_phase_times_count_a_shared_checkpoint_once_per_digest_and_group_by_machine(tmp_path: Path):
    from tkdlib.report import phase_times

    def record(run: str, teacher: float, retrain: float) -> None:
        phases = {"teacher": {"seconds": teacher}, "retrain": {"seconds": retrain}}
        (tmp_path / run).mkdir()
        (tmp_path / run / RECORD_NAME).write_text(json.dumps({"compute": {"counted": ["teacher", "retrain"], "phases": phases}}))

    record("a", 100.0, 10.0)
    record("b", 100.0, 30.0)  # the same teacher checkpoint as run a
    record("c", 50.0, 20.0)  # another machine, its own teacher
    records = _records([("teacher_guided", 0.9, 0.8), ("magnitude", 0.9, 0.82), ("snip", 0.9, 0.79)]).assign(
        run=["a", "b", "c"], teacher_sha256=["t1", "t1", "t2"], machine=["AMD EPYC", "AMD EPYC", "Intel"],
        precision="bf16", finished_at=["2026-12-01T10:00:00", "2026-12-03T10:00:00", "2026-12-02T00:00:00"], reference_rate=[600.0, 900.0, 700.0],
    )
    table = phase_times(tmp_path, records)
    assert list(table.index) == [("teacher", "AMD EPYC", "bf16"), ("teacher", "Intel", "bf16"), ("retrain", "AMD EPYC", "bf16"), ("retrain", "Intel", "bf16")]
    assert table.loc[("teacher", "AMD EPYC", "bf16"), "times"] == 1  # one checkpoint, used twice
    assert table.loc[("retrain", "AMD EPYC", "bf16")].tolist() == [2, 20.0, 10.0, 30.0, 750.0, "2026-12-01", "2026-12-03"]
    assert math.isnan(table.loc[("teacher", "AMD EPYC", "bf16"), "machine speed (images/s)"])  # trained in a sitting of its own


def test_phase_costs_list_each_methods_phases_in_book_order_with_readable_columns(tmp_path: Path):
    from tkdlib.report import phase_costs

    for run, phases in {"m": ["dense", "retrain"], "o": ["teacher", "dense", "guide"]}.items():
        ledger = {phase: {"seconds": 1.26, "flops": 3e12, "student_forward": 10, "student_backward": 10, "teacher_forward": 5} for phase in phases}
        (tmp_path / run).mkdir()
        (tmp_path / run / RECORD_NAME).write_text(json.dumps({"compute": {"counted": phases, "phases": ledger}}))
    records = _records([("magnitude", 0.9, 0.82), ("teacher_guided", 0.9, 0.8)]).assign(run=["m", "o"])
    table = phase_costs(tmp_path, records)
    assert list(table.index) == [("teacher-guided (ours)", "teacher"), ("teacher-guided (ours)", "dense"), ("teacher-guided (ours)", "guide"),
                                 ("magnitude", "dense"), ("magnitude", "retrain")]
    assert list(table.columns) == ["seconds", "FLOPs", "images forward", "images backward", "images through the frozen teacher"]
    assert table["seconds"].tolist() == [1.3] * 5


def test_readable_puts_index_names_in_the_header_row_and_formats_every_column():
    table = pd.DataFrame(
        {"sparsity": [0.9, 0.95], "method": ["magnitude", "SNIP"], "images": [1199360.0, 1148160.0], "FLOPs": [5.97e14, 5.72e14]}
    ).set_index(["sparsity", "method"])
    html = readable(table).to_html()
    header = html.split("</thead>")[0]
    assert header.count("<tr>") == 1, header
    assert all(name in header for name in ("sparsity", "method", "images", "FLOPs"))
    assert "90 %" in html and "1,199,360" in html and "5.97 × 10¹⁴" in html
    assert "1199360.0" not in html and "e+14" not in html
    style = html.split("</style>")[0]
    assert "white-space: nowrap" in style and "_col1" in style and "_col0" not in style  # method names stay on one line


def test_seconds_columns_are_whole_numbers_with_separators_whatever_their_name():
    from tkdlib.report.style import number_format

    assert number_format("median (s)", pd.Series([1.5, 2266.0])) == number_format("seconds", pd.Series([1.5])) == "{:,.0f}"
    assert number_format("accuracy (%)", pd.Series([1.25, 80.0])) == "{:.1f}"
