"""Two regimes side by side: ranks among the methods both finished, and the sentences about them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tkdlib.profile import load_profile
from tkdlib.report.regimes import compared_records, comparison_intro, method_ranking, regime_table, regime_text, shared_methods

REPO = Path(__file__).resolve().parents[1]


def _runs(rows: list[tuple[str, float, int, float]]) -> pd.DataFrame:
    """Main-comparison records: (method, sparsity, seed, retrained accuracy)."""
    return pd.DataFrame([{"method": m, "sparsity": s, "seed": seed, "variant": "", "acc_retrained": a} for m, s, seed, a in rows])


SHORT = _runs([
    ("teacher_guided", 0.9, 0, 0.74), ("teacher_guided", 0.9, 1, 0.76),
    ("magnitude", 0.9, 0, 0.79), ("magnitude", 0.9, 1, 0.79),
    ("snip", 0.9, 0, 0.76),
    ("epsd", 0.9, 0, 0.70),  # only in the short regime: not ranked
])
CONVERGED = _runs([
    ("teacher_guided", 0.9, 0, 0.86), ("magnitude", 0.9, 0, 0.85), ("snip", 0.9, 0, 0.84),
    ("magnitude", 0.95, 0, 0.80),
])


def test_ranking_orders_methods_by_mean_accuracy_with_the_seed_spread():
    ranking = method_ranking(SHORT, 0.9)
    assert list(ranking.index) == ["magnitude", "snip", "teacher_guided", "epsd"]
    assert ranking.loc["teacher_guided", "mean"] == 75.0
    assert round(ranking.loc["teacher_guided", "spread"], 3) == round(pd.Series([74.0, 76.0]).std(), 3)
    assert pd.isna(ranking.loc["snip", "spread"]) and ranking.loc["snip", "seeds"] == 1
    assert list(method_ranking(SHORT, 0.9, ["snip", "teacher_guided"])["rank"]) == [1, 2]


def test_only_methods_finished_in_every_regime_are_ranked():
    regimes = {"short": SHORT, "converged": CONVERGED}
    assert shared_methods(regimes, 0.9) == ["teacher_guided", "magnitude", "snip"]
    assert shared_methods(regimes, 0.95) == []
    table = regime_table(regimes)
    assert list(table.index.get_level_values("sparsity").unique()) == [0.9]
    assert table.loc[(0.9, "teacher-guided (ours)"), "short: rank"] == "3 of 3"
    assert table.loc[(0.9, "teacher-guided (ours)"), "converged: rank"] == "1 of 3"
    assert table.loc[(0.9, "teacher-guided (ours)"), "short: accuracy"] == "75.0 ± 1.4"
    assert table.loc[(0.9, "magnitude"), "converged: accuracy"] == "85.0"


def test_text_names_leaders_ours_and_who_moved():
    text = regime_text({"short": SHORT, "converged": CONVERGED})
    assert "At 90 %, 3 methods finished in both." in text
    assert "Most accurate: magnitude in short and teacher-guided (ours) in converged." in text
    assert "Ours ranks 3 of 3 in short (4.0 points behind the best other) and 1 of 3 in converged (1.0 points ahead of the best other)." in text
    assert "From short to converged, moved up: teacher-guided (ours); down: magnitude and SNIP." in text
    assert "95 %" not in text


def test_text_says_why_ours_is_not_ranked_where_it_finished_in_one_regime_only():
    tiny = _runs([("teacher_guided", 0.95, 0, 0.29), ("magnitude", 0.95, 0, 0.31), ("snip", 0.95, 0, 0.28)])
    cifar = _runs([("magnitude", 0.95, 0, 0.81), ("snip", 0.95, 0, 0.79)])  # ours needs a layer rule there
    text = regime_text({"TinyImageNet": tiny, "CIFAR-10": cifar})
    assert text.endswith("The order is the same in TinyImageNet and CIFAR-10. Ours is not ranked here: it has no finished run without a layer rule in CIFAR-10.")
    assert "not ranked" not in regime_text({"short": SHORT, "converged": CONVERGED})


def test_text_says_when_nothing_can_be_compared_and_when_the_order_holds():
    assert "cannot be compared" in regime_text({"short": SHORT, "converged": CONVERGED[CONVERGED["sparsity"] == 0.95]})
    same = regime_text({"short": SHORT, "again": SHORT})
    assert "The order is the same in short and again." in same
    assert regime_table({"short": SHORT, "converged": CONVERGED[CONVERGED["method"] == "epsd"]}).empty


def test_a_profile_is_set_beside_the_one_its_compare_table_names():
    cpu = load_profile("cpu")
    regimes = compared_records(cpu, REPO / cpu.out_dir)  # the committed records
    assert list(regimes) == ["short", "converged"] and all(len(records) for records in regimes.values())
    intro = comparison_intro(cpu, regimes)
    assert "*short*: profile `cpu`" in intro and "*converged*: profile `cifar10-converged`" in intro
    assert intro.endswith(f"Finished runs: {len(regimes['short'])} and {len(regimes['converged'])}.")
    with pytest.raises(ValueError, match="no \\[compare\\] table"):
        compared_records(load_profile("sample"), REPO / "runs/sample")
