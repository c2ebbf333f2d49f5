"""Two regimes side by side (the short `cpu` schedule and the converged one, or one dataset and
another: a profile's ``[compare]`` table, `tkdlib.profile.Comparison`): how each method's
accuracy after retraining, and its rank among the methods, change between them. Only the methods
that finished in every regime at a sparsity are ranked, so the ranks compare like with like."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from tkdlib.profile import Profile, load_profile
from tkdlib.report.records import OURS, load_records, main_comparison
from tkdlib.report.style import and_list, label, mean_spread, method_order, percent

HIGH_SPARSITIES = (0.9, 0.95, 0.98)  # where the paper's claims and the methods' differences are


def compared_records(profile: Profile, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The records of `profile` (its runs under `out_dir`) and of the profile it is compared with,
    keyed by their labels, this profile's first. Raises ValueError when `profile` has no
    ``[compare]`` table."""
    if profile.comparison is None:
        raise ValueError(f"profile {profile.name!r} has no [compare] table: it names no profile to set beside it")
    other = load_profile(profile.comparison.profile)
    mine, theirs = profile.comparison.labels
    return {mine: load_records(out_dir, profile), theirs: load_records(other.out_dir, other)}


def comparison_intro(profile: Profile, regimes: Mapping[str, pd.DataFrame]) -> str:
    """One Markdown paragraph naming the two regimes of `compared_records(profile, ...)`: label,
    profile, description and number of finished runs of each."""
    if profile.comparison is None:
        raise ValueError(f"profile {profile.name!r} has no [compare] table: it names no profile to set beside it")
    names = (profile.name, profile.comparison.profile)
    descriptions = (profile.description, load_profile(profile.comparison.profile).description)
    parts = [f"*{name}*: profile `{source}`, {description}." for name, source, description in zip(regimes, names, descriptions)]
    counts = " and ".join(str(len(records)) for records in regimes.values())
    return " ".join(parts) + f" Finished runs: {counts}."


def method_ranking(records: pd.DataFrame, sparsity: float, methods: list[str] | None = None) -> pd.DataFrame:
    """The main comparison at `sparsity`, one row per method (of `methods` if given, else every
    method that finished there): ``mean`` and ``spread`` (standard deviation over seeds, NaN with
    one seed) of the retrained accuracy (%), ``seeds`` and ``rank`` (1 = most accurate; ties share
    the better rank). Rows in rank order."""
    at = main_comparison(records)
    at = at[at["sparsity"] == sparsity]
    if methods is not None:
        at = at[at["method"].isin(methods)]
    accuracy = at.groupby("method")["acc_retrained"]
    table = pd.DataFrame({"mean": accuracy.mean() * 100, "spread": accuracy.std() * 100, "seeds": accuracy.count()})
    table["rank"] = table["mean"].rank(ascending=False, method="min").astype(int)
    return table.sort_values(["rank", "mean"], ascending=[True, False])


def finished_methods(regimes: Mapping[str, pd.DataFrame], sparsity: float) -> dict[str, set[str]]:
    """Per regime name, the methods whose main-comparison run finished at `sparsity`."""
    mains = {name: main_comparison(records) for name, records in regimes.items()}
    return {name: set(main.loc[main["sparsity"] == sparsity, "method"]) for name, main in mains.items()}


def shared_methods(regimes: Mapping[str, pd.DataFrame], sparsity: float) -> list[str]:
    """The methods whose main-comparison run finished at `sparsity` in every regime, in book order."""
    finished = list(finished_methods(regimes, sparsity).values())
    return sorted(set.intersection(*finished) if finished else set(), key=method_order)


def regime_table(regimes: Mapping[str, pd.DataFrame], sparsities: tuple[float, ...] = HIGH_SPARSITIES) -> pd.DataFrame:
    """Per sparsity and method (rows; methods finished in every regime there), each regime's
    retrained accuracy (mean ± spread over seeds, %) and rank among those methods ("2 of 5").
    Columns: ``<regime>: accuracy`` and ``<regime>: rank`` for each regime in the order given.
    Empty when no sparsity has a method finished in every regime."""
    rows = []
    for sparsity in sparsities:
        methods = shared_methods(regimes, sparsity)
        if not methods:
            continue
        rankings = {name: method_ranking(records, sparsity, methods) for name, records in regimes.items()}
        for method in methods:
            row: dict[str, object] = {"sparsity": sparsity, "method": label(method)}
            for name, ranking in rankings.items():
                entry = ranking.loc[method]
                row[f"{name}: accuracy"] = mean_spread(entry["mean"], entry["spread"])
                row[f"{name}: rank"] = f"{int(entry['rank'])} of {len(methods)}"
            rows.append(row)
    return pd.DataFrame(rows).set_index(["sparsity", "method"]) if rows else pd.DataFrame()


def regime_text(regimes: Mapping[str, pd.DataFrame], sparsities: tuple[float, ...] = HIGH_SPARSITIES) -> str:
    """What changed between the regimes, in short sentences (plain text, one paragraph per
    sparsity where at least two methods finished in every regime): the leader in each, where ours
    ranks and its gap to the leader, and which methods moved up or down."""
    names = list(regimes)
    paragraphs = []
    for sparsity in sparsities:
        methods = shared_methods(regimes, sparsity)
        if len(methods) < 2:
            continue
        rankings = {name: method_ranking(records, sparsity, methods) for name, records in regimes.items()}
        paragraphs.append(" ".join(_sparsity_sentences(names, rankings, sparsity, len(methods)) + _ours_left_out(regimes, sparsity)))
    if not paragraphs:
        return "No sparsity has two methods finished in every regime yet: the ranking cannot be compared."
    return "\n\n".join(paragraphs)


def _sparsity_sentences(names: list[str], rankings: dict[str, pd.DataFrame], sparsity: float, count: int) -> list[str]:
    leaders = [f"{label(ranking.index[0])} in {name}" for name, ranking in rankings.items()]
    sentences = [f"At {percent(sparsity)}, {count} methods finished in both. Most accurate: {and_list(leaders)}."]
    if all(OURS in ranking.index for ranking in rankings.values()):
        places = [f"{ranking.loc[OURS, 'rank']} of {count} in {name} ({_gap_to_leader(ranking)})" for name, ranking in rankings.items()]
        sentences.append(f"Ours ranks {and_list(places)}.")
    first, last = rankings[names[0]]["rank"], rankings[names[-1]]["rank"]
    up = [label(m) for m in sorted(first.index, key=method_order) if last[m] < first[m]]
    down = [label(m) for m in sorted(first.index, key=method_order) if last[m] > first[m]]
    if up or down:
        moves = ([f"up: {and_list(up)}"] if up else []) + ([f"down: {and_list(down)}"] if down else [])
        sentences.append(f"From {names[0]} to {names[-1]}, moved {'; '.join(moves)}.")
    else:
        sentences.append(f"The order is the same in {and_list(names)}.")
    return sentences


def _ours_left_out(regimes: Mapping[str, pd.DataFrame], sparsity: float) -> list[str]:
    """A sentence where ours finished at `sparsity` in some regimes but not in every one (e.g. it
    empties a layer without a layer rule there), so it is not ranked; none otherwise."""
    finished = {name: OURS in methods for name, methods in finished_methods(regimes, sparsity).items()}
    if all(finished.values()) or not any(finished.values()):
        return []
    missing = [name for name, done in finished.items() if not done]
    return [f"Ours is not ranked here: it has no finished run without a layer rule in {and_list(missing)}."]


def _gap_to_leader(ranking: pd.DataFrame) -> str:
    gap = ranking.loc[OURS, "mean"] - ranking["mean"].drop(OURS).max()
    return f"{abs(gap):.1f} points {'behind' if gap < 0 else 'ahead of'} the best other"
