"""Report helpers that the book's captions and text rely on."""

from __future__ import annotations

import pandas as pd

from tkdlib.report import figure_source


def test_figure_source_names_profile_runs_seeds_and_data():
    records = pd.DataFrame(
        {"seed": [1, 0, 1], "variant": [""] * 3, "dataset": ["cifar10"] * 3, "data": ["cifar10-jpeg.tar.gz (JPEG re-encoding of CIFAR-10)"] * 3}
    )
    text = figure_source(records, "cpu")
    assert text.startswith("Drawn from the 3 finished runs of profile `cpu` (seeds 0, 1;")
    assert "JPEG re-encoding" in text
    assert "the 2 finished runs of profile `cpu` (seed 1;" in figure_source(records[records["seed"] == 1], "cpu")
    assert "the 1 finished run of" in figure_source(records[records["seed"] == 0], "cpu")
