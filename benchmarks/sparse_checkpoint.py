"""Benchmark: bytes of a sparse checkpoint against a dense `torch.save` of the same pruned model.

    python benchmarks/sparse_checkpoint.py [--sparsities 0.9 0.95 0.98]

A ResNet-20 (CIFAR-10, 10 classes) is pruned with a global magnitude mask at each sparsity
(fraction of prunable weights removed) and saved twice: its state_dict with `torch.save`, and
with `tkdlib.sparse_checkpoint.save_sparse` (kept values + packed bitmask per pruned weight;
BatchNorm, biases as they are). Sizes do not depend on the weights' values, so a freshly
initialized model serves. Prints both file sizes in bytes per sparsity and, on the last line,
the ratio sparse/dense at 95 % (goal ≤ 0.12).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from tkdlib.masks import global_mask, prunable_parameters, validate_sparsity
from tkdlib.models import build_model
from tkdlib.scoring import magnitude
from tkdlib.sparse_checkpoint import load_sparse, save_sparse

GOAL = 0.12  # read by run_all.py: the figure on the last line should be at most this
HEADLINE_SPARSITY = 0.95


def checkpoint_bytes(sparsity: float, folder: Path) -> tuple[int, int]:
    """(dense, sparse) file sizes in bytes of a ResNet-20 pruned to `sparsity`; checks the sparse
    file loads back the same state_dict."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), sparsity)
    mask.apply(model)
    dense, sparse = folder / f"dense-{sparsity}.pt", folder / f"sparse-{sparsity}.pt"
    torch.save(model.state_dict(), dense)
    save_sparse(model, mask, sparse)
    loaded = load_sparse(sparse)
    if not all(torch.equal(loaded[name], tensor) for name, tensor in model.state_dict().items()):
        raise AssertionError("the sparse checkpoint did not load back the saved state_dict")
    return dense.stat().st_size, sparse.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, HEADLINE_SPARSITY, 0.98])
    args = parser.parse_args()
    for sparsity in args.sparsities:
        validate_sparsity(sparsity)
    sparsities = sorted({*args.sparsities, HEADLINE_SPARSITY})

    ratios = {}
    with tempfile.TemporaryDirectory() as folder:
        for sparsity in sparsities:
            dense, sparse = checkpoint_bytes(sparsity, Path(folder))
            ratios[sparsity] = sparse / dense
            print(f"ResNet-20 at {sparsity:.0%} sparsity: dense torch.save {dense:,} bytes, sparse {sparse:,} bytes: ratio {sparse / dense:.3f}")
    print(f"sparse/dense checkpoint bytes at {HEADLINE_SPARSITY:.0%}: {ratios[HEADLINE_SPARSITY]:.3f}")


if __name__ == "__main__":
    main()
