"""Does the sign of GraSP's score carry information on a trained network? A diagnostic.

    python scripts/check_grasp_sign.py CHECKPOINT [--data-root ../shared/data] [--sparsity 0.5 0.9]

CHECKPOINT is a dense student a batch trained (``runs/<profile>/checkpoints/student-<key>.pt``:
a dict whose ``state_dict`` is the model's). On the profile's dataset and architecture (CIFAR-10,
ResNet-20 by default), the script scores every prunable weight once with `tkdlib.scoring.grasp`
(w ⊙ Hg over `--score-batches` augmented training batches), then prunes a copy of the student to
each sparsity with four rankings and prints its top-1 test accuracy right after pruning (no
retraining):

- ``grasp``: keep the highest w ⊙ Hg (Wang et al.'s rule: remove the largest S = −w ⊙ Hg), what
  the `grasp` method does;
- ``inverted``: keep the lowest w ⊙ Hg;
- ``|w*Hg|``: keep the largest magnitude of the product, whatever its sign;
- ``magnitude``: keep the largest |w|, for reference.

If ``grasp`` and ``inverted`` both fall far below ``|w*Hg|``, the weights that matter sit in both
tails of w ⊙ Hg, and a signed ranking removes one of the tails. No run record is written: this
explains a result, it is not one.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from tkdlib import data, loaders, scoring
from tkdlib.masks import global_mask, prunable_parameters
from tkdlib.models import build_model
from tkdlib.train import evaluate


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a dense student checkpoint written by a batch")
    parser.add_argument("--data-root", default=None, help="folder holding the datasets (default: $TKD_DATA)")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.5, 0.9], help="fractions of weights removed")
    parser.add_argument("--score-batches", type=int, default=10, help="training batches of 128 images GraSP sums over")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    for sparsity in arguments.sparsity:
        if not 0 < sparsity < 1:
            raise SystemExit(f"--sparsity {sparsity} is not a fraction in (0, 1): 0.9 removes 90 % of the weights")
    if not Path(arguments.checkpoint).is_file():
        raise SystemExit(f"no checkpoint at {arguments.checkpoint}: pass a runs/<profile>/checkpoints/student-<key>.pt that a batch wrote")
    state = torch.load(arguments.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    spec = data.dataset_spec(arguments.dataset)
    train = data.load_dataset(arguments.dataset, "train", arguments.data_root)
    test = data.load_dataset(arguments.dataset, "test", arguments.data_root)
    student = build_model(arguments.arch, train.num_classes).to(memory_format=torch.channels_last)
    student.load_state_dict(state)
    test_batches = loaders.TensorLoader(test, 256, spec.mean, spec.std, train=False)
    train_batches = loaders.TensorLoader(train, 128, spec.mean, spec.std, train=True, pad=spec.pad)
    print(f"dense student: {evaluate(student, test_batches):.4f}")

    parameters = prunable_parameters(student)
    products = scoring.grasp(student, parameters, train_batches, arguments.score_batches)
    rankings = {
        "grasp": products,
        "inverted": {name: -product for name, product in products.items()},
        "|w*Hg|": {name: product.abs() for name, product in products.items()},
        "magnitude": scoring.magnitude(parameters),
    }
    for sparsity in arguments.sparsity:
        for name, scores in rankings.items():
            pruned = copy.deepcopy(student)
            global_mask(scores, sparsity, allow_layer_collapse=True).apply(pruned)
            print(f"{sparsity:.0%} sparse, {name:>9}: {evaluate(pruned, test_batches):.4f}")


if __name__ == "__main__":
    main()
