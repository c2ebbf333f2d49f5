from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tkdlib.overlap import jaccard, layer_jaccard


def _mask(seed: int, density: float, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=generator) < density for name, shape in shapes.items()}


SHAPES = {"conv.weight": (4, 3, 3, 3), "fc.weight": (10, 4)}


def test_known_overlap_per_layer_and_over_the_network():
    a = {"x": torch.tensor([True, True, False, False]), "y": torch.tensor([True, False])}
    b = {"x": torch.tensor([True, False, True, False]), "y": torch.tensor([True, False])}
    assert layer_jaccard(a, b) == {"x": pytest.approx(1 / 3), "y": 1.0}
    assert jaccard(a, b) == pytest.approx(2 / 4)  # kept by both: x[0], y[0]; by either: x[0..2], y[0]


@settings(max_examples=30, deadline=None)
@given(seed_a=st.integers(0, 2**16), seed_b=st.integers(0, 2**16), density=st.floats(0.01, 0.99))
def test_jaccard_is_symmetric_bounded_and_one_on_itself(seed_a, seed_b, density):
    a, b = _mask(seed_a, density, SHAPES), _mask(seed_b, density, SHAPES)
    assert jaccard(a, b) == pytest.approx(jaccard(b, a))
    assert 0.0 <= jaccard(a, b) <= 1.0
    assert jaccard(a, a) == 1.0
    complement = {name: ~keep for name, keep in a.items()}
    assert jaccard(a, complement) == 0.0


def test_masks_of_other_layers_or_shapes_are_refused():
    a = _mask(0, 0.5, SHAPES)
    with pytest.raises(ValueError, match="different parameters"):
        jaccard(a, {"conv.weight": a["conv.weight"]})
    with pytest.raises(ValueError, match="shape"):
        layer_jaccard(a, {**a, "fc.weight": torch.ones(4, 10, dtype=torch.bool)})
