"""The saliency study ("What the teacher changes"): its tables and its findings in sentences, from
the records of a profile that runs it (`cpu-bf16`).

Most of its cells are *mask-only*: ``retrain_epochs = 0``, so the record's ``pruned`` accuracy
(right after pruning) and ``pruned_bn`` (the same network with BatchNorm statistics re-estimated,
`tkdlib.batchnorm`) measure the mask alone. The retrained cells beside them say which mask
retrains best. Accuracies are top-1 on the test split; tables give them in % as "mean ± std" over
the seeds (no ± with one seed). Sparsity is the fraction of prunable weights removed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tkdlib.checkpoints import sparse_model_of
from tkdlib.overlap import jaccard
from tkdlib.report.records import OURS, mask_only, read_record, retrained
from tkdlib.report.style import and_list, label, mean_spread, method_order, percent, seed_cell
from tkdlib.report.variants import SCORE_FORMS, variant_decision_sentences
from tkdlib.sparse_checkpoint import load_sparse_mask

STAGE_NAMES = {"acc_pruned": "pruned", "acc_pruned_bn": "BatchNorm re-estimated", "acc_retrained": "retrained"}


def _method_rows(table: pd.DataFrame) -> pd.DataFrame:
    table = table.loc[sorted(table.index, key=method_order)]
    table.index = [label(method) for method in table.index]
    return table


def mask_accuracy_table(records: pd.DataFrame) -> pd.DataFrame:
    """Each score's mask before any retraining: accuracy (%) right after pruning and after
    re-estimating BatchNorm, per sparsity (columns "90 %: pruned", …), one row per method."""
    runs = mask_only(records)
    columns = {}
    for sparsity, at in runs.groupby("sparsity"):
        for stage in ("acc_pruned", "acc_pruned_bn"):
            columns[f"{percent(sparsity)}: {STAGE_NAMES[stage]}"] = at.groupby("method")[stage].agg(seed_cell)
    return _method_rows(pd.DataFrame(columns).fillna("—"))


def masks_by_method(out_dir: str | Path, runs: pd.DataFrame) -> dict[tuple[str, int], dict]:
    """(method, seed) → the mask of that run, read from its committed sparse checkpoint
    (`tkdlib.checkpoints.sparse_model_of`); runs whose checkpoint is absent are left out."""
    masks = {}
    for method, seed, run in zip(runs["method"], runs["seed"], runs["run"]):
        if (path := sparse_model_of(out_dir, run)) is not None:
            masks[(method, seed)] = load_sparse_mask(path)
    return masks


def overlap_matrix(out_dir: str | Path, records: pd.DataFrame, sparsity: float) -> pd.DataFrame:
    """Jaccard index (%) of the kept weights of every two methods' masks at `sparsity`, each pair
    on the same dense student, averaged over the seeds both ran (mask-only runs). Rows and columns
    are method names in the book's order; the diagonal is 100."""
    runs = mask_only(records)
    masks = masks_by_method(out_dir, runs[runs["sparsity"] == sparsity])
    methods = sorted({method for method, _ in masks}, key=method_order)
    table = pd.DataFrame(index=methods, columns=methods, dtype=float)
    for index, first in enumerate(methods):
        for second in methods[index:]:  # the index is symmetric: each pair once
            shared = sorted(seed for method, seed in masks if method == first and (second, seed) in masks)
            values = [jaccard(masks[(first, seed)], masks[(second, seed)]) for seed in shared]
            table.loc[first, second] = table.loc[second, first] = 100 * sum(values) / len(values) if values else float("nan")
    table.index = table.columns = [label(method) for method in methods]
    return table


def guiding_table(out_dir: str | Path, records: pd.DataFrame, sparsity: float = 0.9) -> pd.DataFrame:
    """The teacher's scores with and without their guiding epoch (``guide_epochs = 0``), at
    `sparsity`: the mask's accuracy (%) with BatchNorm re-estimated, and the kept weights it
    shares with the CE gradient's mask (Jaccard, %, mean over shared seeds). Separates what the
    scoring loss changes from what one epoch of fine-tuning under the teacher changes."""
    runs = mask_only(records, {"guide_epochs=0"})
    runs = runs[runs["sparsity"] == sparsity]
    unguided = runs["variant"].str.contains("guide_epochs=0", regex=False)
    reference = masks_by_method(out_dir, runs[(runs["method"] == "ce_gradient") & ~unguided])
    rows = {}
    for method in ("teacher_guided", "teacher_fisher"):
        row = {}
        for name, chosen in (("guided", runs[(runs["method"] == method) & ~unguided]), ("not guided", runs[(runs["method"] == method) & unguided])):
            row[f"{name}: BatchNorm re-estimated"] = seed_cell(chosen["acc_pruned_bn"]) if not chosen.empty else "not run yet"
            masks = masks_by_method(out_dir, chosen)
            shared = [jaccard(masks[(m, seed)], reference[("ce_gradient", seed)]) for m, seed in masks if ("ce_gradient", seed) in reference]
            row[f"{name}: shared with the CE gradient (%)"] = mean_spread(100 * pd.Series(shared).mean(), None) if shared else "—"
        rows[method] = row
    return _method_rows(pd.DataFrame(rows).T)


def normalization_table(records: pd.DataFrame, sparsity: float = 0.9) -> pd.DataFrame:
    """Ours at `sparsity`, guided and scored with z-scored or raw logits at each scoring
    temperature T: accuracy (%) of its mask right after pruning and with BatchNorm re-estimated.
    Rows: (logits, T); the paper's reading is z-scored logits at the KD temperature."""
    runs = mask_only(records, {"normalize_logits=False", "score_temperature=1.0", "score_temperature=2.0"})
    runs = runs[(runs["method"] == OURS) & (runs["sparsity"] == sparsity)]
    if runs.empty:
        return pd.DataFrame(columns=[STAGE_NAMES["acc_pruned"], STAGE_NAMES["acc_pruned_bn"]])
    table = runs.groupby(["normalize_logits", "score_temperature"])[["acc_pruned", "acc_pruned_bn"]].agg(seed_cell)
    table = table.rename(columns=STAGE_NAMES).sort_index(ascending=[False, True])
    table.index = table.index.set_names(["logits", "T"]).set_levels([["raw", "z-scored"][value] for value in table.index.levels[0]], level=0)
    return table


def retraining_normalization_table(records: pd.DataFrame, sparsity: float = 0.9) -> pd.DataFrame:
    """Ours at `sparsity`, retrained: accuracy (%) with z-scored or raw logits in guiding and
    scoring (rows) crossed with z-scored or raw logits in KD retraining (columns)."""
    runs = retrained(records, {"normalize_logits=False", "retrain_normalize_logits=False", "retrain_normalize_logits=True"})
    runs = runs[(runs["method"] == OURS) & (runs["sparsity"] == sparsity)]
    if runs.empty:
        return pd.DataFrame()
    table = runs.groupby(["normalize_logits", "retrain_normalize_logits"])["acc_retrained"].agg(seed_cell).unstack().fillna("not run yet")
    names = {True: "z-scored", False: "raw"}
    table.index = [f"scores from {names[value]} logits" for value in table.index]
    table.columns = [f"retrained on {names[value]} logits" for value in table.columns]
    return table.iloc[::-1, ::-1]  # z-scored (the paper's reading) first


def saliency_table(records: pd.DataFrame, retrained_sparsity: float = 0.9) -> pd.DataFrame:
    """The six scores (teacher's joint loss or cross-entropy × three forms of the saliency): the
    mask's accuracy (%) with BatchNorm re-estimated at each sparsity of the mask-only runs, and the
    retrained accuracy at `retrained_sparsity`. Rows: (loss, form); their method names are the
    `SCORE_FORMS` keys."""
    masks = mask_only(records)
    columns = {
        f"{percent(sparsity)}: {STAGE_NAMES['acc_pruned_bn']}": at.groupby("method")["acc_pruned_bn"].agg(seed_cell)
        for sparsity, at in masks.groupby("sparsity")
    }
    full = retrained(records)
    full = full[full["sparsity"] == retrained_sparsity]
    columns[f"{percent(retrained_sparsity)}: retrained"] = full.groupby("method")["acc_retrained"].agg(seed_cell)
    table = pd.DataFrame(columns).reindex(list(SCORE_FORMS)).fillna("not run yet")
    table.index = pd.MultiIndex.from_tuples([SCORE_FORMS[method] for method in table.index], names=["loss", "saliency"])
    return table


def score_batches_table(records: pd.DataFrame, sparsity: float = 0.9) -> pd.DataFrame:
    """Ours and the CE gradient scored on a few batches or a whole epoch: the mask's accuracy (%)
    with BatchNorm re-estimated at `sparsity`; one column per number of scoring batches."""
    runs = mask_only(records, {f"score_batches={count}" for count in records["score_batches"].unique()})
    runs = runs[runs["method"].isin([OURS, "ce_gradient"]) & (runs["sparsity"] == sparsity)]
    if runs.empty:
        return pd.DataFrame()
    table = runs.groupby(["method", "score_batches"])["acc_pruned_bn"].agg(seed_cell).unstack()
    table.columns = [f"{count} batches" for count in table.columns]
    return _method_rows(table.fillna("—"))


def emptied_layers(out_dir: str | Path, records: pd.DataFrame) -> pd.DataFrame:
    """The layers each score leaves without a weight, in the mask-only runs allowed to empty one
    (``allow_layer_collapse``; a retrained run of the same cell has the same mask): method, sparsity, layer, the seeds where it was emptied, and why:
    the layer's share (%) of the network's prunable weights against its share of the summed score
    (mean over those seeds; "—" for records made before scores were summarised)."""
    runs = records[records["variant"].str.contains("allow_layer_collapse=True", regex=False) & (records["retrain_epochs"] == 0)]
    found: dict[tuple[str, float, str], list[tuple[int, float, float]]] = {}
    for method, sparsity, seed, run in zip(runs["method"], runs["sparsity"], runs["seed"], runs["run"]):
        record = read_record(out_dir, run)
        layers = record["sparsity"]["layers"]
        weights = sum(layer.get("total", 0) for layer in layers)
        score_shares = {layer["name"]: layer["share"] for layer in record.get("scores", {}).get("layers", [])}
        for layer in layers:
            if layer["kept"] == 0:
                weight_share = 100 * layer["total"] / weights if weights else float("nan")
                entry = (seed, weight_share, 100 * score_shares.get(layer["name"], float("nan")))
                found.setdefault((method, sparsity, layer["name"].removesuffix(".weight")), []).append(entry)
    rows = [
        {
            "method": label(method), "sparsity": sparsity, "layer": layer, "seeds": ", ".join(str(seed) for seed, _, _ in sorted(entries)),
            "share of weights (%)": pd.Series([share for _, share, _ in entries]).mean(),
            "share of summed score (%)": pd.Series([share for _, _, share in entries]).mean(),
        }
        for (method, sparsity, layer), entries in sorted(found.items(), key=lambda item: (method_order(item[0][0]), item[0][1:]))
    ]
    return pd.DataFrame(rows, columns=["method", "sparsity", "layer", "seeds", "share of weights (%)", "share of summed score (%)"])


def _span(low: float, high: float, digits: int = 0) -> str:
    """``low to high`` with `digits` decimals, or one number where they print the same."""
    low_text, high_text = f"{low:.{digits}f}", f"{high:.{digits}f}"
    return low_text if low_text == high_text else f"{low_text} to {high_text}"


def _percent_of(runs: pd.DataFrame, column: str) -> pd.Series:
    """Mean of `column` (%) over seeds, per method."""
    return runs.groupby("method")[column].mean() * 100


def _overlap_sentences(matrices: dict[float, pd.DataFrame]) -> list[str]:
    """One sentence: ours' overlap (Jaccard, %) with the CE gradient and with magnitude at every sparsity."""
    levels = [sparsity for sparsity, matrix in matrices.items() if label(OURS) in matrix.index]
    parts = []
    for other in ("ce_gradient", "magnitude"):
        found = [(sparsity, matrices[sparsity].loc[label(OURS), label(other)]) for sparsity in levels if label(other) in matrices[sparsity].index]
        if found:
            parts.append(f"{and_list([f'{value:.0f}' for _, value in found])} % with {label(other)}")
    if not parts:
        return []
    at = and_list([f"{sparsity * 100:.0f}" for sparsity in levels])
    return [f"The teacher moves the mask: at {at} % sparsity, ours keeps weights in common (Jaccard) {' and '.join(parts)}."]


def _loss_or_form_sentence(matrices: dict[float, pd.DataFrame], sparsity: float) -> list[str]:
    """Whether the loss (teacher's or CE) or the form of the saliency moves the mask more, from
    the overlap of ours with the CE gradient against that of each loss's first-order and Fisher forms."""
    matrix = matrices.get(sparsity, pd.DataFrame())
    pairs = {"loss": (OURS, "ce_gradient"), "teacher": (OURS, "teacher_fisher"), "ce": ("ce_gradient", "fisher")}
    values = {key: matrix.loc[label(a), label(b)] for key, (a, b) in pairs.items() if label(a) in matrix.index and label(b) in matrix.index}
    if not {"loss", "teacher", "ce"} <= set(values):
        return []
    forms = (values["teacher"], values["ce"])
    more = "more" if values["loss"] < min(forms) else "less" if values["loss"] > max(forms) else "about as much"
    return [
        f"At {percent(sparsity)}, the loss moves the mask {more} than the form of the saliency: the first-order and Fisher forms "
        f"of one loss share {_span(*sorted(forms))} % of their weights, the first-order scores of the teacher's loss "
        f"(after its guiding epoch) and of CE {values['loss']:.0f} %."
    ]


def _guiding_sentence(out_dir: str | Path, records: pd.DataFrame, sparsity: float) -> list[str]:
    row = guiding_table(out_dir, records, sparsity).loc[label(OURS)]
    guided, unguided = row["guided: shared with the CE gradient (%)"], row["not guided: shared with the CE gradient (%)"]
    if "—" in (guided, unguided):
        return []
    return [f"Without its guiding epoch, ours shares {unguided} % of its kept weights with the CE gradient at {percent(sparsity)}; with it, {guided} %."]


def _before_retraining_sentences(records: pd.DataFrame, sparsity: float) -> list[str]:
    runs = mask_only(records)
    runs = runs[runs["sparsity"] == sparsity]
    if runs.empty or runs["acc_pruned_bn"].isna().all():
        return []
    pruned, recalibrated = _percent_of(runs, "acc_pruned"), _percent_of(runs, "acc_pruned_bn")
    best = recalibrated.idxmax()
    sentences = [
        f"Right after pruning to {percent(sparsity)}, the masks score {pruned.min():.1f} to {pruned.max():.1f} % with the dense network's BatchNorm statistics.",
        f"With BatchNorm re-estimated they score {recalibrated.min():.1f} to {recalibrated.max():.1f} %: "
        f"part of the drop is stale statistics, and the masks still differ by {recalibrated.max() - recalibrated.min():.0f} points.",
        f"Before retraining, the best mask at {percent(sparsity)} is {label(best)}'s ({recalibrated[best]:.1f} % with BatchNorm re-estimated)"
        + (f"; ours reaches {recalibrated[OURS]:.1f} %" if OURS in recalibrated and best != OURS else "")
        + (f", the CE gradient {recalibrated['ce_gradient']:.1f} %." if "ce_gradient" in recalibrated and best != "ce_gradient" else "."),
    ]
    return sentences


def _retraining_normalization_sentence(records: pd.DataFrame, sparsity: float) -> list[str]:
    """Where the normalization acts once ours is retrained: the four combinations of z-scored or
    raw logits in scoring and in KD retraining, means over seeds (%)."""
    runs = retrained(records, {"normalize_logits=False", "retrain_normalize_logits=False", "retrain_normalize_logits=True"})
    runs = runs[(runs["method"] == OURS) & (runs["sparsity"] == sparsity)]
    means = runs.groupby(["normalize_logits", "retrain_normalize_logits"])["acc_retrained"].mean() * 100
    if not {(True, True), (True, False)} <= set(means.index):
        return []
    sentence = (
        f"Retrained at {percent(sparsity)}, the paper's mask reaches {means[(True, True)]:.1f} % with KD on z-scored logits "
        f"and {means[(True, False)]:.1f} % on raw logits"
    )
    if {(False, True), (False, False)} <= set(means.index):
        sentence += f"; scores from raw logits reach {means[(False, True)]:.1f} and {means[(False, False)]:.1f} %"
    return [sentence + ": the normalization costs most in retraining."]


def _normalization_sentence(records: pd.DataFrame, sparsity: float) -> list[str]:
    runs = mask_only(records, {"normalize_logits=False", "score_temperature=1.0", "score_temperature=2.0"})
    runs = runs[(runs["method"] == OURS) & (runs["sparsity"] == sparsity)]
    grouped = runs.groupby(["normalize_logits", "score_temperature"])["acc_pruned_bn"]
    means, spreads = grouped.mean().dropna() * 100, grouped.std().dropna() * 100
    if len(means) < 2:
        return []
    (normalized, temperature), best = means.idxmax(), means.max()
    logits = "z-scored" if normalized else "raw"
    sentence = (
        f"Ours keeps its best mask at {percent(sparsity)} with {logits} logits at T = {temperature:g} "
        f"({best:.1f} % with BatchNorm re-estimated); the settings span {_span(means.min(), best, 1)} %"
    )
    if not spreads.empty:
        verdict = "within" if best - means.min() <= spreads.max() else "more than"
        sentence += f", {verdict} the largest seed spread ({spreads.max():.1f} points)"
    return [sentence + "."]


def _collapse_sentences(out_dir: str | Path, records: pd.DataFrame) -> list[str]:
    table = emptied_layers(out_dir, records)
    sentences = []
    for (layer, sparsity), rows in table.groupby(["layer", "sparsity"], sort=False):
        verb = "leaves" if len(rows) == 1 else "leave"
        sentence = f"At {percent(sparsity)}, {and_list(list(rows['method']))} {verb} {layer} empty"
        shares = rows.dropna(subset=["share of summed score (%)"])
        if not shares.empty:
            each = ", ".join(f"{share:.2f} % under {method}" for method, share in zip(shares["method"], shares["share of summed score (%)"]))
            sentence += f": it holds {rows['share of weights (%)'].iloc[0]:.1f} % of the prunable weights, and of their summed score {each}"
        sentences.append(sentence + ".")
    return sentences


def saliency_text(out_dir: str | Path, records: pd.DataFrame, sparsity: float = 0.9) -> str:
    """The study's findings in short sentences (plain text, one paragraph each), each from the records;
    sentences whose runs have not finished are left out."""
    matrices = {level: overlap_matrix(out_dir, records, level) for level in sorted(mask_only(records)["sparsity"].unique())}  # the masks are read once
    before = _before_retraining_sentences(records, sparsity)
    sentences = [  # the answers first, then what explains them
        *_overlap_sentences(matrices),
        *before[-1:],
        *variant_decision_sentences(records),
        *_retraining_normalization_sentence(records, sparsity),
        *_loss_or_form_sentence(matrices, sparsity),
        *_guiding_sentence(out_dir, records, sparsity),
        *before[:-1],
        *_normalization_sentence(records, sparsity),
        *_collapse_sentences(out_dir, records),
    ]
    return "\n\n".join(sentences) if sentences else "No run of the saliency study has finished yet."
