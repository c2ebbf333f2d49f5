"""The claims table: each verdict follows from the records' numbers and their seed spread."""

from __future__ import annotations

import pandas as pd

from tkdlib.report.claims import claims_table


def _runs(rows: list[tuple[str, float, int, float]], dense: float = 0.83, variant: str = "") -> pd.DataFrame:
    """Records of one `variant` (default: the main comparison): (method, sparsity, seed, retrained accuracy)."""
    return pd.DataFrame([
        {"method": method, "sparsity": sparsity, "seed": seed, "acc_retrained": accuracy, "acc_dense": dense, "acc_teacher": 0.85,
         "total_flops": 3e14 if method == "colt" else 1e14, "variant": variant, "teacher_sha256": "t", "dense_sha256": f"d{seed}"}
        for method, sparsity, seed, accuracy in rows
    ])


def test_verdicts_weigh_each_gap_against_the_seed_spread():
    records = _runs([
        ("teacher_guided", 0.9, 0, 0.825), ("teacher_guided", 0.9, 1, 0.823),  # within a point of the dense 83 %
        ("epsd", 0.9, 0, 0.80), ("epsd", 0.9, 1, 0.79),  # ours leads by 2.9 points, spread 1.0
        ("ce_gradient", 0.9, 0, 0.824), ("ce_gradient", 0.9, 1, 0.818),  # +0.3 against a spread of 0.6: undecided
        ("colt", 0.9, 0, 0.83), ("colt", 0.9, 1, 0.83),  # 3 × our FLOPs, 0.6 points more accurate, spread 0.2
    ])
    table = claims_table(records)
    assert table["verdict"].tolist() == ["supported", "supported", "not supported", "undecided"]
    assert "Dense student 83.0 %; ours 82.4 % at 90 % (-0.6)" in table.loc["High sparsity with minimal loss of accuracy", "evidence"]
    assert "COLT costs 3.00 × the FLOPs of ours; ours -0.6 points (seed spread 0.2, 2 seeds)" in table.loc["Cheaper than iterative COLT", "evidence"]


def test_one_seed_decides_nothing_and_missing_runs_are_not_measured():
    records = _runs([("teacher_guided", 0.9, 0, 0.70), ("teacher_guided", 0.95, 0, 0.60), ("ce_gradient", 0.9, 0, 0.65)])
    table = claims_table(records)
    assert table["verdict"].tolist() == ["not supported", "not measured", "not measured", "undecided"]
    assert "(+5.0 points; 1 seed: no spread yet)" in table.loc["The teacher in the scores matters, not only in recovery", "evidence"]
    mixed = _runs([("teacher_guided", 0.9, s, a) for s, a in ((0, 0.80), (1, 0.80))] + [("teacher_guided", 0.95, s, a) for s, a in ((0, 0.70), (1, 0.70))]
                  + [("epsd", 0.9, s, a) for s, a in ((0, 0.75), (1, 0.75))] + [("epsd", 0.95, s, a) for s, a in ((0, 0.75), (1, 0.75))])
    assert claims_table(mixed).loc["More accurate than EPSD at high sparsity", "verdict"] == "mixed"


def test_methods_meet_only_under_one_layer_rule():
    """Ours empties a layer at 95 % without a rule: there its floor runs meet the CE gradient's
    floor runs, and EPSD, which ran only without a rule, is compared at 90 % alone."""
    main = _runs([("teacher_guided", 0.9, 0, 0.80), ("ce_gradient", 0.9, 0, 0.79), ("epsd", 0.9, 0, 0.78),
                  ("ce_gradient", 0.95, 0, 0.70), ("epsd", 0.95, 0, 0.90)])
    floor = _runs([("teacher_guided", 0.95, 0, 0.76), ("ce_gradient", 0.95, 0, 0.77)], variant="layer_floor=0.005")
    collapse = _runs([("teacher_guided", 0.95, 0, 0.60)], variant="allow_layer_collapse=True")
    table = claims_table(pd.concat([main, collapse, floor], ignore_index=True))
    teacher = table.loc["The teacher in the scores matters, not only in recovery", "evidence"]
    assert "95 % (per-layer floor 0.5 %): ours 76.0 %, CE gradient (no teacher) 77.0 % (-1.0 points" in teacher
    assert "90 %: ours 80.0 %, CE gradient (no teacher) 79.0 %" in teacher
    assert "95 %" not in table.loc["More accurate than EPSD at high sparsity", "evidence"]
    assert "76.0 % at 95 % (per-layer floor 0.5 %)" in table.loc["High sparsity with minimal loss of accuracy", "evidence"]
