"""The teacher-guided saliency variants (our extensions, not the paper's) and the rule that decides
whether one earns a place as a named method: it must beat ours, retrained, by more than the seed
spread at every sparsity of `DECISION_SPARSITIES` (2 seeds on the short schedule). Accuracies in
%, changes in percentage points; sparsity is the fraction of prunable weights removed.
"""

from __future__ import annotations

import math

import pandas as pd

from tkdlib.report.records import OURS, retrained
from tkdlib.report.style import and_list, label, percent, sentence_case

# method → (the loss its gradient comes from, the form of the saliency); g is one batch's gradient
SCORE_FORMS = {
    "teacher_guided": ("teacher's joint loss", "|w·g| summed over batches"),
    "teacher_snip": ("teacher's joint loss", "|w·Σg| (SNIP form)"),
    "teacher_fisher": ("teacher's joint loss", "½·w²·Σg² (Fisher form)"),
    "ce_gradient": ("cross-entropy", "|w·g| summed over batches"),
    "snip": ("cross-entropy", "|w·Σg| (SNIP form)"),
    "fisher": ("cross-entropy", "½·w²·Σg² (Fisher form)"),
}
TEACHER_VARIANTS = ("teacher_snip", "teacher_fisher")  # the teacher-guided saliencies that could replace the paper's
DECISION_SPARSITIES = (0.9, 0.95)  # a variant must beat ours by more than the seed spread at each
CE_ONLY = "cross-entropy"


def without_teacher(variant: str) -> str | None:
    """The method with `variant`'s saliency form on the cross-entropy alone (``snip`` for
    ``teacher_snip``), or None where there is none."""
    form = SCORE_FORMS[variant][1]
    return next((method for method, (loss, other) in SCORE_FORMS.items() if loss == CE_ONLY and other == form), None)


def _decision_runs(records: pd.DataFrame) -> pd.DataFrame:
    """Retrained runs of the decision: the main ones, and where ours empties a layer (95 %) the runs
    that allow it; one run per (method, sparsity, seed), main runs first."""
    runs = retrained(records, {"allow_layer_collapse=True"}).sort_values("variant", kind="stable")
    return runs.drop_duplicates(["method", "sparsity", "seed"])


def _change(runs: pd.DataFrame, sparsity: float, method: str, reference: str) -> tuple[float, float, float, float] | None:
    """At `sparsity`, among `runs`: mean accuracy (%) of `method` and of `reference` over their
    seeds, the change (points) and the seed spread (the larger std of the two, points); None
    until both have finished there."""
    at = runs[runs["sparsity"] == sparsity].groupby("method")["acc_retrained"]
    mean, std = at.mean() * 100, at.std() * 100
    if method not in mean or reference not in mean:
        return None
    return mean[method], mean[reference], mean[method] - mean[reference], max(std.get(method, math.nan), std.get(reference, math.nan))


def variant_decision_table(records: pd.DataFrame) -> pd.DataFrame:
    """Each teacher-guided variant of `TEACHER_VARIANTS` against ours, retrained, at each sparsity
    of `DECISION_SPARSITIES`: mean accuracy (%) of each over its seeds, the change (points), the
    seed spread (the larger standard deviation over seeds of the two, points) and whether the
    change exceeds it. Where ours empties a layer (95 %), the runs that allow it are used. Rows:
    (sparsity, variant); empty until ours and a variant have both finished somewhere."""
    runs = _decision_runs(records)
    rows = []
    for sparsity in DECISION_SPARSITIES:
        for variant in TEACHER_VARIANTS:
            if (found := _change(runs, sparsity, variant, OURS)) is not None:
                accuracy, ours, change, spread = found
                rows.append({"sparsity": sparsity, "variant": label(variant), "ours (%)": ours, "variant (%)": accuracy,
                             "change (points)": change, "seed spread (points)": spread, "beyond the spread": bool(change > spread)})
    return pd.DataFrame(rows).set_index(["sparsity", "variant"]) if rows else pd.DataFrame()


def earned_variants(records: pd.DataFrame) -> list[str]:
    """The variants (book names) that beat ours by more than the seed spread at every sparsity of
    `DECISION_SPARSITIES`, once all of them have finished: the issue's rule for a named method."""
    return _earned(variant_decision_table(records))


def _earned(table: pd.DataFrame) -> list[str]:
    """`earned_variants` from a `variant_decision_table` already computed."""
    if table.empty:
        return []
    beyond = table["beyond the spread"].unstack("sparsity").reindex(columns=list(DECISION_SPARSITIES))
    return [variant for variant, row in beyond.iterrows() if row.notna().all() and row.all()]


def variant_decision_sentences(records: pd.DataFrame) -> list[str]:
    """The decision in two sentences: the best variant's change against ours at each sparsity and
    the verdict; then, for each variant that earned its place, how it compares with its own form
    without the teacher. Empty until ours and a variant have both finished somewhere."""
    table = variant_decision_table(records)
    if table.empty:
        return []
    changes = []
    for sparsity, rows in table.groupby(level="sparsity"):
        key = rows["change (points)"].idxmax()
        changes.append(f"at {percent(sparsity)}, {key[1]} {rows.loc[key, 'change (points)']:+.1f} points (seed spread {rows.loc[key, 'seed spread (points)']:.1f})")
    finished = set(table.index.get_level_values("sparsity")) >= set(DECISION_SPARSITIES)
    earned = _earned(table)
    if earned:
        verdict = f"{sentence_case(and_list(earned))} beats ours by more than the seed spread at {and_list([percent(s) for s in DECISION_SPARSITIES])}: it earns a place as a named method."
    elif finished:
        verdict = f"No teacher-guided variant beats ours by more than the seed spread at {and_list([percent(s) for s in DECISION_SPARSITIES])}."
    else:
        verdict = f"The decision waits for {and_list([percent(s) for s in DECISION_SPARSITIES if s not in set(table.index.get_level_values('sparsity'))])}."
    return [f"Retrained, the best teacher-guided variant against ours: {'; '.join(changes)}. {verdict}", *_without_teacher_sentences(records, earned)]


def _without_teacher_sentences(records: pd.DataFrame, earned: list[str]) -> list[str]:
    """For each earned variant (book name): its change against its form on the cross-entropy alone,
    per sparsity where both finished, and whether every change stays within the seed spread."""
    runs = _decision_runs(records)
    sentences = []
    for variant in TEACHER_VARIANTS:
        reference = without_teacher(variant)
        if label(variant) not in earned or reference is None:
            continue
        changes, within = [], []
        for sparsity in DECISION_SPARSITIES:
            if (found := _change(runs, sparsity, variant, reference)) is not None:
                _, _, change, spread = found
                changes.append(f"{change:+.1f} points at {percent(sparsity)} (seed spread {spread:.1f})")
                within.append(abs(change) <= spread)
        if changes:
            verdict = ": within the seed spread, so the form, not the teacher, makes the difference" if all(within) else ""
            sentences.append(f"{sentence_case(label(variant))} against {label(reference)}, the same form without the teacher: {and_list(changes)}{verdict}.")
    return sentences
