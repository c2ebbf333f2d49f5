"""How the book names, orders, colours and formats methods and numbers, the same on every page.

`readable` turns a numeric table into what a reader sees: accuracy and points with one decimal,
counts with thousands separators, FLOPs as ``5.97 × 10¹⁴``, ratios with two decimals and "×".
The table functions return numbers (so tests and users can compute with them); notebooks show
them through `readable`.
"""

from __future__ import annotations

import math
import re

import pandas as pd
from pandas.io.formats.style import Styler

METHOD_LABELS = {
    "teacher_guided": "teacher-guided (ours)",
    "ce_gradient": "CE gradient (no teacher)",
    "magnitude": "magnitude",
    "random": "random",
    "snip": "SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "imp": "IMP (iterative, rewinding)",
    "colt": "COLT (our re-implementation)",
    "epsd": "EPSD (our re-implementation)",
    "teacher_snip": "teacher, SNIP form (our extension)",
    "teacher_fisher": "teacher, Fisher form (our extension)",
    "fisher": "CE, Fisher form (our extension)",
}
OURS_COLOUR = "#c0392b"  # ours is the only red line, drawn thicker and on top
# The other methods: seaborn's colour-blind palette without its red, in the order of METHOD_LABELS.
METHOD_COLOURS = {
    "teacher_guided": OURS_COLOUR,
    "ce_gradient": "#0173b2",
    "magnitude": "#029e73",
    "random": "#949494",
    "snip": "#de8f05",
    "grasp": "#cc78bc",
    "synflow": "#ca9161",
    "imp": "#56b4e9",
    "colt": "#fbafe4",
    "epsd": "#ece133",
    "teacher_snip": "#8b0000",
    "teacher_fisher": "#e377c2",
    "fisher": "#17becf",
}
METHOD_MARKERS = {
    "teacher_guided": "o", "ce_gradient": "s", "magnitude": "^", "random": "x", "snip": "D",
    "grasp": "v", "synflow": "P", "imp": "*", "colt": "X", "epsd": "h",
    "teacher_snip": "<", "teacher_fisher": ">", "fisher": "d",
}
_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def label(method: str) -> str:
    """The book's name for `method` (a config's ``method``); unknown methods keep their own."""
    return METHOD_LABELS.get(method, method)


def method_order(method: str) -> tuple[int, str]:
    """Sort key: the order of `METHOD_LABELS`, unknown methods after them by name."""
    order = list(METHOD_LABELS)
    return (order.index(method) if method in order else len(order), method)


def colour(method: str) -> str:
    """`method`'s colour on every figure (grey for a method the book does not know)."""
    return METHOD_COLOURS.get(method, "#555555")


def marker(method: str) -> str:
    return METHOD_MARKERS.get(method, "o")


def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def sentence_case(text: str) -> str:
    """`text` with its first letter capitalised, the rest untouched (method names start lower-case)."""
    return text[:1].upper() + text[1:]


def scientific(value: float, digits: int = 3) -> str:
    """`value` in scientific notation for readers: 5.97e14 → ``5.97 × 10¹⁴``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    return f"{mantissa:.{digits - 1}f} × 10{str(exponent).translate(_SUPERSCRIPTS)}"


def percent(fraction: float) -> str:
    """A sparsity or other fraction in whole percent: 0.95 → ``95 %``."""
    return f"{fraction * 100:.0f} %"


def mean_spread(mean: float, spread: float | None) -> str:
    """A mean over seeds with one decimal and its spread where there is one: ``83.2 ± 0.4``."""
    return f"{mean:.1f}" if spread is None or math.isnan(spread) else f"{mean:.1f} ± {spread:.1f}"


def seed_cell(values: pd.Series) -> str:
    """Accuracies of one cell's seeds (fractions) as "mean ± std" in %, no ± with one seed, "—"
    with none."""
    values = values.dropna() * 100
    return mean_spread(values.mean(), values.std() if len(values) > 1 else None) if len(values) else "—"


def number_format(column: str, values: pd.Series) -> str | None:
    """How `readable` writes a numeric column, chosen by its name: FLOPs in scientific notation,
    ratios (``… vs ours``) with two decimals and "×", sparsity in percent, whole numbers
    (counts, seconds or "(s)", seeds) with thousands separators, anything else with one decimal."""
    name = column.lower()
    if "flops" in name and "vs" not in name:
        return "scientific"
    if " vs " in name:
        return "{:.2f} ×"
    if name == "sparsity":
        return "percent"
    whole = values.dropna()
    if re.search(r"images|seconds|\(s\)|seeds|kept|^of$|count|weights", name) or (len(whole) and (whole == whole.round()).all()):
        return "{:,.0f}"
    return "{:.1f}"


def readable(table: pd.DataFrame) -> Styler:
    """`table` as the book shows it: each numeric column written by `number_format`, missing
    values as "—", text left as it is and kept on one line (a method's name does not break across
    lines; a wide table scrolls). A named index becomes the first columns, so that its names
    head their columns in the one header row rather than in a second row of their own."""
    if any(name is not None for name in table.index.names):
        return readable(table.reset_index()).hide(axis="index")
    formats = {}
    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column]):
            chosen = number_format(str(column), table[column])
            formats[column] = {"scientific": scientific, "percent": percent}.get(chosen, chosen)
    styler = table.style.format(formats, na_rep="—")
    text_columns = [column for column in table.columns if column not in formats]
    if text_columns:
        styler = styler.set_properties(subset=text_columns, **{"white-space": "nowrap"})
    if isinstance(table.index, pd.MultiIndex) or pd.api.types.is_numeric_dtype(table.index):
        styler = styler.format_index(lambda value: percent(value) if isinstance(value, float) and value < 1 else value)
    return styler
