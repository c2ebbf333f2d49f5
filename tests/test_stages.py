from __future__ import annotations

import torch

from tkdlib.masks import global_mask, prunable_parameters
from tkdlib.scoring import magnitude
from tkdlib.stages import Stages, density
from tkdlib.train import evaluate


def test_stages_table_holds_seconds_accuracy_and_density_after_each_stage(tiny_net, tiny_batches):
    stages = Stages(tiny_batches)
    with stages.stage("dense", tiny_net):
        pass
    with stages.stage("pruned", tiny_net):
        mask = global_mask(magnitude(prunable_parameters(tiny_net)), 0.75)
        mask.apply(tiny_net)
    table = stages.table()
    assert list(table.index) == ["dense", "pruned"]
    assert list(table.columns) == ["model", "seconds", "test accuracy", "density"]
    assert table.loc["dense", "density"] == 1.0
    assert table.loc["pruned", "density"] == mask.kept / mask.total == density(tiny_net)
    assert table.loc["pruned", "test accuracy"] == evaluate(tiny_net, tiny_batches)
    assert (table["seconds"] >= 0).all() and (table["model"] == "TinyNet").all()


def test_density_counts_exact_zeros_of_prunable_weights_only(tiny_net):
    with torch.no_grad():
        tiny_net.fc.weight[0].zero_()  # 6 of 162 + 24 = 186 prunable weights
        tiny_net.fc.bias.zero_()  # biases are not prunable: not counted
    assert density(tiny_net) == 180 / 186
