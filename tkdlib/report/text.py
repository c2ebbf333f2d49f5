"""The book's generated sentences, from `tkdlib.report.records` frames: every number in them is read
from run records."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import pandas as pd

from tkdlib.profile import Profile
from tkdlib.report.records import OURS, VARIANT_SEPARATOR, at_comparison_sparsity, comparison_sparsity, data_label, main_comparison, per_seed, planned_methods, variant_name
from tkdlib.report.style import and_list, label, method_order
from tkdlib.report.tables import ablation_table, cost_over_ours, rule_of, runs_by_layer_rule


def by_sparsity_text(records: pd.DataFrame, failed: pd.DataFrame | None = None) -> str:
    """The main comparison in words, a Markdown list with one sentence per sparsity: the most accurate
    method there (retrained accuracy, seeds averaged) and where teacher-guided pruning ranks and
    by how many percentage points it trails or leads, or that its run failed there (`failed`:
    `failed_runs` with the profile) or has not finished. Where the methods there ran different
    numbers of seeds, each quoted accuracy says how many it averages. A sparsity where no run
    without a layer rule has finished is told from the first layer rule of `runs_by_layer_rule`
    that has runs there, and says so."""
    failed_ours = set()
    if failed is not None:
        ours = failed[failed["method"] == OURS]
        failed_ours = set(zip(ours["variant"].map(rule_of), ours["sparsity"]))
    sentences: dict[float, str] = {}
    for rule, runs in runs_by_layer_rule(records):
        grouped = runs.groupby(["sparsity", "method"])
        accuracy, seeds = grouped["acc_retrained"].mean() * 100, grouped["seed"].nunique()
        for sparsity, by_method in accuracy.groupby(level="sparsity"):
            if sparsity in sentences:
                continue
            at = f"At {sparsity * 100:.0f} % sparsity"
            if rule:
                at += f", with the {rule} (no run without a layer rule has finished there)"
            text = _ranking_sentence(at, by_method.droplevel("sparsity"), seeds.loc[sparsity], (rule, sparsity) in failed_ours)
            if OURS not in by_method.index.get_level_values("method"):
                text += "".join(f"; {phrase}" for phrase in _ours_under_layer_rules(records, sparsity))
            sentences[sparsity] = text
    return "\n".join(f"- {sentences[sparsity]}." for sparsity in sorted(sentences))


def _ranking_sentence(at: str, accuracy: pd.Series, seeds: pd.Series, ours_failed: bool) -> str:
    """`at` (where: "At 90 % sparsity"), then the most accurate method of `accuracy` (%, one value
    per method; `seeds`: how many seeds each averages) and where teacher-guided pruning stands
    against it: its rank and gap, or that it `ours_failed` or has not finished there."""
    ranked = accuracy.sort_values(ascending=False)
    quoted = partial(_quoted, ranked, seeds if seeds.nunique() > 1 else None)
    leaders = [method for method in ranked.index if ranked[method] == ranked.iloc[0]]
    best = next((method for method in leaders if method != OURS), OURS)  # ours leads only alone
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
        text += f"; teacher-guided pruning ranks {rank(ranked, OURS)} with {quoted(OURS)}, {_points(ranked[best] - ranked[OURS])} points behind"
    else:
        text += f"; teacher-guided pruning {'failed' if ours_failed else 'has not finished'} there"
    return text


def _ours_under_layer_rules(records: pd.DataFrame, sparsity: float) -> list[str]:
    """A phrase per layer rule (`runs_by_layer_rule`, the main comparison left out) under which
    teacher-guided pruning finished at `sparsity`: its accuracy (%, seeds averaged) and that of
    the most accurate other method run with the same rule, if any."""
    phrases = []
    for rule, runs in runs_by_layer_rule(records):
        if rule == "":
            continue
        accuracy = runs[runs["sparsity"] == sparsity].groupby("method")["acc_retrained"].mean() * 100
        if OURS not in accuracy:
            continue
        phrase = f"with the {rule} it reaches {accuracy[OURS]:.1f} %"
        others = accuracy.drop(OURS)
        if not others.empty:
            phrase += f" ({label(others.idxmax())} with the same rule: {others.max():.1f} %)"
        phrases.append(phrase)
    return phrases


def _quoted(accuracy: pd.Series, seeds: pd.Series | None, method: str) -> str:
    """`method`'s accuracy (%) from `accuracy`, followed by how many seeds it averages where
    `seeds` (seed count per method) is given."""
    text = f"{accuracy[method]:.1f} %"
    if seeds is None:
        return text
    count = int(seeds[method])
    return f"{text} over {count} seeds" if count > 1 else f"{text} on 1 seed"


def rank(accuracy: pd.Series, method: str) -> int:
    """`method`'s place (1 = most accurate) in `accuracy` (one value per method)."""
    return int((accuracy > accuracy[method]).sum()) + 1


def _points(gap: float) -> str:
    """A gap in percentage points to one decimal, or to two where one would round it to 0.0."""
    return f"{gap:.1f}" if gap >= 0.05 else f"{gap:.2f}"


LARGEST_CHANGES = 3  # how many ablation changes `ablation_text` names; the rest are in the ablation table


def ablation_text(records: pd.DataFrame, profile: Profile) -> str:
    """The ablations in short sentences (plain text): the largest changes against the reference
    runs (percentage points), how many changes exceed the seed spread of those references, the
    variants without a finished reference, and the variants of `profile` not finished yet (named
    when at most `LARGEST_CHANGES`, else counted). The
    full list, and each switch of a combined variant on its own, are in the ablation tables.

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
        return spoken(variant) + (f" for {method} at {sparsity * 100:.0f} %" if unusual else "")

    table = table.sort_values("change", key=abs, ascending=False, kind="stable")
    largest = [f"{named(variant, row.method, row.sparsity)} {_change_phrase(row)}" for variant, row in table.head(LARGEST_CHANGES).iterrows()]
    sentences = [
        f"Each ablation changes {usual_method} at {usual_sparsity * 100:.0f} % sparsity unless it names another method or sparsity.",
        f"{'The largest changes' if len(largest) > 1 else 'The change'} against the main run of the same seed (points): {and_list(largest)}.",
    ]
    if len(table) > LARGEST_CHANGES:
        sentences.append(f"The ablation table lists the other {len(table) - LARGEST_CHANGES}.")
    sentences.append(_seed_spread_sentence(records, table))
    if not unreferenced.empty:
        alone = [f"{named(variant, row.method, row.sparsity)} {row.accuracy:.1f} %" for variant, row in unreferenced.iterrows()]
        sentences.append(f"Without a finished main run to compare with: {and_list(alone)}.")
    finished = set(zip(every_variant.index, every_variant["method"], every_variant["sparsity"]))
    missing = [named(*cell) for cell in planned if cell not in finished]
    if len(missing) > LARGEST_CHANGES:  # a long list is the ablation table's job, not a sentence's
        sentences.append(f"{len(missing)} planned variants have not run yet.")
    elif missing:
        sentences.append(f"Not run yet: {and_list(missing)}.")
    return " ".join(sentences)


def spoken(variant: str) -> str:
    """A variant's name for running text: its switches joined with " + "."""
    return variant.replace(VARIANT_SEPARATOR, " + ")


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
    beyond = int((table["change"].abs() > max(spreads)).sum())
    return f"For scale, the reference runs' seeds landed up to {max(spreads):.1f} points apart; {beyond} of the {len(table)} changes exceed that."


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
    FLOPs, over ours; both count the teacher and dense student a method pays for), and
    ``seconds_vs_ours_<method>`` where both records measured their machine (the wall seconds of
    the method's own phases over ours, each scaled to one machine speed: ``scaled_pruning_seconds``).
    """
    main = main_comparison(records)
    top = at_comparison_sparsity(records)
    by_method = top.groupby("method")[["acc_retrained", "total_images", "total_flops", "scaled_pruning_seconds"]].mean()
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
        numbers["ours_rank"] = rank(accuracy, OURS)
        numbers["gap_to_best_other"] = float((accuracy[OURS] - accuracy.drop(OURS).max()) * 100)
        ratios = cost_over_ours(by_method).drop(OURS)
        for column, quantity in (("total_images", "images_vs_ours"), ("total_flops", "flops_vs_ours")):
            numbers.update({f"{quantity}_{m}": float(ratio) for m, ratio in ratios[column].items()})
        seconds = by_method["scaled_pruning_seconds"]
        numbers.update({f"seconds_vs_ours_{m}": float(value / seconds[OURS]) for m, value in seconds.drop(OURS).dropna().items() if seconds[OURS] > 0})
    return numbers


def headline_text(records: pd.DataFrame, profile: Profile) -> str:
    """The book's verdict for `profile` in short sentences (plain text), written from `headline`:
    the dense networks, ours at the `comparison_sparsity`, the best other method and the gap
    against the seed spread, any method more accurate for fewer FLOPs, what the profile plans there
    but has not run, and `iterative_cost_text`. The per-method numbers are in the results table."""
    numbers = headline(records)
    planned = planned_methods(profile, comparison_sparsity(records))
    at = f"{numbers['sparsity']:.0f} % sparsity"
    sentences = [_trained_once_sentence(records)]
    if f"accuracy_{OURS}" not in numbers:
        return " ".join([*sentences, f"Teacher-guided pruning has not finished at {at} yet."])
    sentences.append(f"At {at}, teacher-guided pruning reaches {numbers[f'accuracy_{OURS}']:.1f} % after retraining.")
    if "ours_rank" not in numbers:
        return " ".join([*sentences, "No other method has finished there yet."])
    others = [m for m in _methods_in(numbers, "accuracy") if m != OURS]
    best_other = max(others, key=lambda m: numbers[f"accuracy_{m}"])  # the method `gap_to_best_other` measures against
    gap = numbers["gap_to_best_other"]
    sentences += [
        f"The best of the other methods, {label(best_other)}, reaches {numbers[f'accuracy_{best_other}']:.1f} %.",
        f"Ours ranks {numbers['ours_rank']:.0f} of {numbers['methods_compared']:.0f}, {abs(gap):.1f} points {'behind' if gap < 0 else 'ahead'}.",
    ]
    sentences += [_seeds_sentence(numbers, best_other), _cheaper_and_better_sentence(numbers)]
    missing = [m for m in planned if f"accuracy_{m}" not in numbers]
    if missing:
        sentences.append(f"Not yet run at {at}: {and_list([label(m) for m in missing])}.")
    if "imp" not in missing:  # that list already says IMP has not run
        sentences.append(_iterative_cost_sentence(numbers, "imp" in planned))
    return " ".join(sentence for sentence in sentences if sentence)


def _methods_in(numbers: dict[str, float], quantity: str) -> list[str]:
    """The methods that `headline`'s `numbers` hold a ``<quantity>_<method>`` key for, in the
    book's order (`method_order`: methods of one's own after the book's)."""
    prefix = f"{quantity}_"
    return sorted((key.removeprefix(prefix) for key in numbers if key.startswith(prefix)), key=method_order)


def _trained_once_sentence(records: pd.DataFrame) -> str:
    """The accuracy of the teacher and dense student every run of a seed shares: one value, or
    the range over seeds; one teacher's where every record names the same teacher checkpoint."""
    teachers, students = per_seed(records, "acc_teacher") * 100, per_seed(records, "acc_dense") * 100
    if len(teachers) == 1:
        return f"The dense teacher reaches {teachers.iloc[0]:.1f} % test accuracy, the dense student {students.iloc[0]:.1f} %."
    seeds = and_list([str(seed) for seed in teachers.index])
    shas = records["teacher_sha256"]
    if shas.notna().all() and shas.nunique() == 1:  # one teacher checkpoint serves every seed
        return f"One dense teacher serves seeds {seeds} and reaches {teachers.iloc[0]:.1f} % test accuracy; the dense students reach {_range(students)} %."
    return (
        f"The dense teachers reach {_range(teachers)} % test accuracy, the dense students {_range(students)} % (seeds {seeds})."
    )


def _range(values: pd.Series) -> str:
    """Lowest to highest with one decimal ("84.6–84.7"), or the one value all share."""
    low, high = f"{values.min():.1f}", f"{values.max():.1f}"
    return low if low == high else f"{low}–{high}"


def _seeds_sentence(numbers: dict[str, float], best_other: str) -> str:
    """From `headline`'s `numbers`: how far ours' and the best other method's seeds landed apart,
    and whether the gap between the two exceeds that; empty while both ran one seed."""
    seeds = {m: int(numbers[f"seeds_{m}"]) for m in _methods_in(numbers, "seeds")}
    pair = [m for m in (OURS, best_other) if seeds.get(m, 0) > 1]
    if not pair:
        return ""
    spans = [f"{'ours' if m == OURS else label(m)} {numbers[f'spread_{m}']:.1f}" for m in pair]
    verdict = "wider" if abs(numbers["gap_to_best_other"]) > max(numbers[f"spread_{m}"] for m in pair) else "no wider"
    return f"Across seeds, the accuracy spans {and_list(spans)} points: the gap is {verdict} than that."


def _cheaper_and_better_sentence(numbers: dict[str, float]) -> str:
    """From `headline`'s `numbers`: the methods more accurate than ours for fewer FLOPs, or, when
    some are more accurate, that none of them cost less; empty when ours is the most accurate."""
    ours = numbers[f"accuracy_{OURS}"]
    cheaper = [m for m in _methods_in(numbers, "flops_vs_ours") if numbers[f"flops_vs_ours_{m}"] < 1 and numbers[f"accuracy_{m}"] > ours]
    if not cheaper:
        return "" if numbers["ours_rank"] == 1 else "None of the more accurate methods costs fewer FLOPs."
    ratios = and_list([f"{label(m)} at {numbers[f'flops_vs_ours_{m}']:.2f} × the FLOPs" for m in cheaper])
    return f"More accurate for fewer FLOPs than ours: {ratios}."


def iterative_cost_text(records: pd.DataFrame, profile: Profile) -> str:
    """One sentence: IMP's cost over ours at the `comparison_sparsity`, or that IMP has not run
    there yet, or that `profile` does not run it there at all."""
    numbers = headline(records)
    return _iterative_cost_sentence(numbers, "imp" in planned_methods(profile, comparison_sparsity(records)))


def _iterative_cost_sentence(numbers: dict[str, float], imp_planned: bool) -> str:
    at = f"{numbers['sparsity']:.0f} % sparsity"
    if "images_vs_ours_imp" not in numbers and not imp_planned:
        return f"This profile does not run iterative magnitude pruning at {at}."
    if "images_vs_ours_imp" not in numbers:
        return f"Iterative magnitude pruning has not run at {at} yet."
    text = (
        f"Iterative magnitude pruning costs {numbers['flops_vs_ours_imp']:.2f} × the FLOPs of teacher-guided one-shot pruning "
        f"and {numbers['images_vs_ours_imp']:.2f} × the images, counting the teacher and dense student each pays for."
    )
    if "seconds_vs_ours_imp" in numbers:
        text += (
            f" Its pruning rounds take {numbers['seconds_vs_ours_imp']:.2f} × the wall time of our guiding, scoring and retraining "
            "(each run's seconds scaled by the speed its machine measured)."
        )
    return text


def _finished_runs(records: pd.DataFrame) -> str:
    return f"{len(records)} finished run{'s' if len(records) != 1 else ''}"


def page_caption(profile: Profile, records: pd.DataFrame) -> str:
    """The line under a summary page's title, in Markdown: the profile's description, its name,
    its data, and how many of the runs its grid plans have finished (`records`: the finished
    ones, by ``run``; runs of cells the grid no longer plans are counted apart)."""
    planned = {config.key() for config in profile.configs()}
    in_grid = int(records["run"].isin(planned).sum())
    progress = f"all {len(planned)} runs its grid plans have" if in_grid == len(planned) else f"{in_grid} of the {len(planned)} runs its grid plans {'has' if in_grid == 1 else 'have'}"
    outside = len(records) - in_grid
    progress += " finished" + (f", and {outside} outside it" if outside else "")
    return f"*{profile.description}.* Profile `{profile.name}`, on {data_label(records)}: {progress}."


def figure_source(records: pd.DataFrame, profile: str) -> str:
    """The sentence of a figure caption that says what the figure was drawn from.

    It names the profile, how many finished runs of the main comparison (each listed by run id in
    the book's table of every run), their seeds and their data, in Markdown.
    """
    records = main_comparison(records)
    seeds = sorted(records["seed"].unique())
    runs = _finished_runs(records)
    seed_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(seed) for seed in seeds)}"
    return f"Drawn from the {runs} of profile `{profile}` ({seed_text}; run ids in the appendix *Every run*), on {data_label(records)}."
