"""The paper's claims against what the records show, one row per claim, with a verdict.

Each verdict compares a difference with the seed spread of the runs it rests on (the largest
spread, highest minus lowest seed, of the methods compared), at every sparsity of 90 % and above
where they finished: *supported* when the difference favours the claim by more than that spread
everywhere, *not supported* when it goes against the claim by more than the spread somewhere and
nowhere for it, *undecided* when it stays within the spread (or rests on one seed, which has no
spread) everywhere, *mixed* otherwise, *not measured* when the runs are missing.

Two methods are compared only under one layer rule: the main comparison (no rule) where both
finished there, else the first rule (`tables.layer_rule`: a per-layer floor before "collapse
allowed") under which both ran. Where ours empties a layer without a rule (it fails at 95 % on
converged CIFAR-10), its floor runs thus meet the baselines' floor runs, never their main ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd

from tkdlib.report.records import OURS, main_comparison, per_seed
from tkdlib.report.style import label, percent
from tkdlib.report.tables import runs_by_layer_rule

MINIMAL_DROP = 1.0  # percentage points below the dense student that count as "minimal degradation"
HIGH_SPARSITY = 0.9  # the claims about high sparsity look at 90 % and above

SUPPORTED, NOT_SUPPORTED, UNDECIDED, MIXED, NOT_MEASURED = "supported", "not supported", "undecided", "mixed", "not measured"


def _by_sparsity(runs: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per sparsity ≥ `HIGH_SPARSITY` of `method`'s `runs` (records of one layer rule): mean
    accuracy (%), seed spread (points), number of seeds, mean FLOPs."""
    runs = runs[(runs["method"] == method) & (runs["sparsity"] >= HIGH_SPARSITY)]
    accuracy = runs.groupby("sparsity")["acc_retrained"]
    return pd.DataFrame({
        "accuracy": accuracy.mean() * 100,
        "spread": (accuracy.max() - accuracy.min()) * 100,
        "seeds": accuracy.count(),
        "flops": runs.groupby("sparsity")["total_flops"].mean(),
    })


def _verdict(outcomes: list[bool | None]) -> str:
    """One verdict from an outcome per sparsity: True for the claim, False against it, None
    undecided (within the seed spread, or one seed)."""
    if not outcomes:
        return NOT_MEASURED
    if all(outcome is True for outcome in outcomes):
        return SUPPORTED
    if all(outcome is None for outcome in outcomes):
        return UNDECIDED
    if True not in outcomes:
        return NOT_SUPPORTED
    return MIXED


def _spread(spread: float, seeds: int) -> str:
    """The seed spread of a comparison in words; one seed has none yet."""
    return "1 seed: no spread yet" if seeds == 1 else f"seed spread {spread:.1f}, {seeds} seeds"


def _pairs(records: pd.DataFrame, method: str, other: str) -> Iterator[tuple[float, str, pd.Series, pd.Series]]:
    """Per sparsity ≥ `HIGH_SPARSITY` where `method` and `other` both finished under one layer
    rule, ascending: the sparsity, the first such rule of `runs_by_layer_rule`, and each method's row of
    `_by_sparsity` under it. With `other` = `method`: where `method` finished, under which rule."""
    found: dict[float, tuple[str, pd.Series, pd.Series]] = {}
    for rule, runs in runs_by_layer_rule(records):
        mine, theirs = _by_sparsity(runs, method), _by_sparsity(runs, other)
        for sparsity in mine.index.intersection(theirs.index).difference(list(found)):
            found[sparsity] = (rule, mine.loc[sparsity], theirs.loc[sparsity])
    for sparsity in sorted(found):
        yield sparsity, *found[sparsity]


def _under(rule: str) -> str:
    """How the evidence names a layer rule: nothing for the main comparison."""
    return f" ({rule})" if rule else ""


def minimal_degradation(records: pd.DataFrame) -> tuple[str, str]:
    """Ours within `MINIMAL_DROP` points of the dense student at each sparsity ≥ 90 %."""
    ours = {sparsity: (rule, row) for sparsity, rule, row, _ in _pairs(records, OURS, OURS)}
    if not ours:
        return NOT_MEASURED, f"{label(OURS)} has not finished at {percent(HIGH_SPARSITY)} sparsity or above."
    dense = per_seed(records, "acc_dense").mean() * 100
    drops = {sparsity: dense - row["accuracy"] for sparsity, (_, row) in ours.items()}
    parts = [f"{row['accuracy']:.1f} % at {percent(sparsity)}{_under(rule)} ({-drops[sparsity]:+.1f})" for sparsity, (rule, row) in ours.items()]
    evidence = f"Dense student {dense:.1f} %; ours {', '.join(parts)}. Minimal: within {MINIMAL_DROP:.0f} point."
    return _verdict([bool(drop <= MINIMAL_DROP) for drop in drops.values()]), evidence


def _against(records: pd.DataFrame, other: str) -> tuple[list[bool | None], list[str]]:
    """Ours against `other` at each sparsity ≥ 90 % both finished under one layer rule (`_pairs`):
    `_beyond_spread` per sparsity (None where either ran one seed) and a phrase per sparsity."""
    outcomes, parts = [], []
    for sparsity, rule, ours, theirs in _pairs(records, OURS, other):
        gap = ours["accuracy"] - theirs["accuracy"]
        spread = max(ours["spread"], theirs["spread"])
        seeds = int(min(ours["seeds"], theirs["seeds"]))
        outcomes.append(_beyond_spread(gap, spread) if seeds > 1 else None)
        parts.append(
            f"{percent(sparsity)}{_under(rule)}: ours {ours['accuracy']:.1f} %, {label(other)} {theirs['accuracy']:.1f} % "
            f"({gap:+.1f} points; {_spread(spread, seeds)})"
        )
    return outcomes, parts


def _beyond_spread(gap: float, spread: float) -> bool | None:
    """True when ours leads by more than the spread, None within it, False when it trails by more."""
    return True if gap > spread else (False if gap < -spread else None)


def beats_epsd(records: pd.DataFrame) -> tuple[str, str]:
    """Ours more accurate than EPSD at high sparsity, by more than the seed spread."""
    outcomes, parts = _against(records, "epsd")
    return _verdict(outcomes), "; ".join(parts) or f"EPSD and ours have not both finished at {percent(HIGH_SPARSITY)} or above."


def teacher_in_the_scores(records: pd.DataFrame) -> tuple[str, str]:
    """The teacher in the scores: ours against the same scores without the teacher (the CE
    gradient), both retrained alike."""
    outcomes, parts = _against(records, "ce_gradient")
    return _verdict(outcomes), "; ".join(parts) or "The CE-gradient ablation and ours have not both finished."


def cheaper_than_colt(records: pd.DataFrame) -> tuple[str, str]:
    """Ours costs fewer FLOPs than iterative COLT at the same sparsity (counting the teacher and
    dense student each pays for), without losing more accuracy than the seed spread."""
    outcomes, parts = [], []
    for sparsity, rule, ours, colt in _pairs(records, OURS, "colt"):
        ratio = colt["flops"] / ours["flops"]
        gap = ours["accuracy"] - colt["accuracy"]
        spread = max(ours["spread"], colt["spread"])
        seeds = int(min(ours["seeds"], colt["seeds"]))
        outcomes.append(bool(ratio > 1 and gap >= -spread))
        parts.append(f"{percent(sparsity)}{_under(rule)}: COLT costs {ratio:.2f} × the FLOPs of ours; ours {gap:+.1f} points ({_spread(spread, seeds)})")
    return _verdict(outcomes), "; ".join(parts) or f"COLT and ours have not both finished at {percent(HIGH_SPARSITY)} or above."


CLAIMS: tuple[tuple[str, Callable[[pd.DataFrame], tuple[str, str]]], ...] = (
    ("High sparsity with minimal loss of accuracy", minimal_degradation),
    ("More accurate than EPSD at high sparsity", beats_epsd),
    ("Cheaper than iterative COLT", cheaper_than_colt),
    ("The teacher in the scores matters, not only in recovery", teacher_in_the_scores),
)


def claims_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per claim of the paper's abstract (`CLAIMS`): our ``verdict`` and the ``evidence``
    (the numbers it rests on, at each sparsity ≥ 90 % where the runs finished)."""
    rows = [{"claim": claim, **dict(zip(("verdict", "evidence"), judge(records)))} for claim, judge in CLAIMS]
    return pd.DataFrame(rows).set_index("claim")
