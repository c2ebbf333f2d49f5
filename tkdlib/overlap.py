"""How far two masks agree: the Jaccard index of their kept weights, over the network and per layer.

A mask maps parameter names to bool tensors (True = kept), as `tkdlib.masks.Mask` or
`tkdlib.sparse_checkpoint.load_sparse_mask` give. Two masks of one network at one sparsity keep
the same number of weights, so their Jaccard index J = |A ∩ B| / |A ∪ B| also gives the fraction
of kept weights they share: |A ∩ B| / |A| = 2J / (1 + J).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _check_comparable(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    if set(a) != set(b):
        raise ValueError(f"the masks cover different parameters: only in the first {sorted(set(a) - set(b))}, only in the second {sorted(set(b) - set(a))}")
    for name in a:
        if a[name].shape != b[name].shape:
            raise ValueError(f"mask {name!r} has shape {tuple(a[name].shape)} in the first mask and {tuple(b[name].shape)} in the second")


def layer_jaccard(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per parameter name (in `a`'s order), |A ∩ B| / |A ∪ B| of its kept weights; 1.0 where both
    keep nothing (they agree). Raises ValueError when the masks cover other names or shapes."""
    _check_comparable(a, b)
    result = {}
    for name in a:
        both, either = int((a[name] & b[name]).sum()), int((a[name] | b[name]).sum())
        result[name] = both / either if either else 1.0
    return result


def jaccard(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """|A ∩ B| / |A ∪ B| over every weight the masks cover (1.0 when both keep nothing). Raises
    ValueError when the masks cover other names or shapes."""
    _check_comparable(a, b)
    both = sum(int((a[name] & b[name]).sum()) for name in a)
    either = sum(int((a[name] | b[name]).sum()) for name in a)
    return both / either if either else 1.0
