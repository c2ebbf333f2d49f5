"""Which weights are prunable, global one-shot masks, and holding a mask on a model.

Units: *sparsity* is the fraction of prunable weights removed (0.9 = 90 % zeros);
*density* = 1 − sparsity is the fraction kept. A mask is keyed by parameter name
(``"layers.0.conv1.weight"``), so it can be saved, loaded and applied without renaming any
state_dict key; each entry is a bool tensor of the weight's shape, True = kept. The same
tensor is what ``torch.nn.utils.prune.custom_from_mask(module, "weight", mask)`` takes:
`Mask.to_torch_prune` and `Mask.from_torch_prune` carry masks to and from that module.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from tkdlib.io import save_torch, write_json

PRUNABLE_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
TORCH_PRUNE_MASK_SUFFIX = "_mask"  # torch.nn.utils.prune keeps `<name>_mask` buffers beside `<name>_orig`


class LayerCollapseError(ValueError):
    """A global mask would remove every weight of some layer."""


def prunable_parameters(
    model: nn.Module,
    prune_first_layer: bool = True,
    prune_classifier: bool = True,
    exclude: Iterable[str] | Callable[[str], bool] = (),
) -> dict[str, nn.Parameter]:
    """The weights of conv (1d, 2d, 3d) and linear layers, by parameter name, in registration order.

    Layers are found by module type, so any model works (grouped and depthwise convs included).
    Biases and BatchNorm parameters are never prunable. The first layer and the last
    (classifier) layer can be excluded; by default both are prunable. `exclude` leaves out more
    weights: parameter names (``"fc.weight"``; every name must be a prunable weight) or a
    predicate on the name (``lambda name: name.startswith("head.")``).
    """
    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, PRUNABLE_MODULES)]
    if not layers:
        raise ValueError(f"The model has no layer to prune: none of {', '.join(m.__name__ for m in PRUNABLE_MODULES)}.")
    chosen = layers[(0 if prune_first_layer else 1) : (None if prune_classifier else -1)]
    parameters = {f"{name}.weight" if name else "weight": module.weight for name, module in chosen}
    if callable(exclude):
        return {name: param for name, param in parameters.items() if not exclude(name)}
    excluded = set(exclude)
    unknown = excluded - set(parameters)
    if unknown:
        raise ValueError(f"exclude names {sorted(unknown)}, which are not prunable weights of this model; choose from {list(parameters)}")
    return {name: param for name, param in parameters.items() if name not in excluded}


def validate_sparsity(sparsity: float) -> None:
    """Sparsity must be a number in [0, 1)."""
    if not isinstance(sparsity, (int, float)) or math.isnan(sparsity) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the fraction of weights removed and must lie in [0, 1), got {sparsity!r}")


class Mask(Mapping[str, torch.Tensor]):
    """Bool tensors keyed by parameter name; True keeps a weight, False removes it."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        for name, mask in masks.items():
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise TypeError(f"mask {name!r} must be a torch.bool tensor, got {kind}")
        self._masks = {name: mask.detach() for name, mask in masks.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    @property
    def total(self) -> int:
        """Number of prunable weights covered by the mask."""
        return sum(mask.numel() for mask in self._masks.values())

    @property
    def kept(self) -> int:
        """Number of weights kept."""
        return sum(int(mask.sum()) for mask in self._masks.values())

    @property
    def sparsity(self) -> float:
        """Fraction of the covered weights removed, in [0, 1]."""
        return 1.0 - self.kept / self.total

    def layer_report(self) -> list[dict[str, Any]]:
        """Per layer: name, shape, total weights, kept weights and density (fraction kept)."""
        return [
            {
                "name": name,
                "shape": list(mask.shape),
                "total": mask.numel(),
                "kept": int(mask.sum()),
                "density": int(mask.sum()) / mask.numel(),
            }
            for name, mask in self._masks.items()
        ]

    def check_fits(self, model: nn.Module) -> None:
        """Raise `ValueError` unless every key names a parameter of `model` of the same shape.

        The error names the first mismatching parameter (in the mask's order) and both shapes.
        """
        parameters = dict(model.named_parameters())
        for name, mask in self._masks.items():
            if name not in parameters:
                hint = (
                    "the model is pruned with torch.nn.utils.prune: use Mask.from_torch_prune(model), or prune.remove it first"
                    if f"{name}_orig" in parameters
                    else "was the mask made for another model?"
                )
                raise ValueError(f"mask key {name!r} is not a parameter of this model; {hint}")
            if parameters[name].shape != mask.shape:
                raise ValueError(
                    f"mask {name!r} has shape {tuple(mask.shape)} but the model's parameter {name!r} has shape "
                    f"{tuple(parameters[name].shape)}: the mask was made for another model"
                )

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Set the pruned weights of `model` to exactly zero (once; see `HeldMask` to keep them there)."""
        self.check_fits(model)
        parameters = dict(model.named_parameters())
        for name, keep in self._masks.items():
            parameters[name].mul_(keep.to(parameters[name].device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A plain dict of bool CPU tensors (what `save` writes)."""
        return {name: mask.cpu() for name, mask in self._masks.items()}

    def save(self, path: str | Path) -> None:
        """Write the masks with `torch.save` and, beside them, ``<path>.json`` with the sparsity report."""
        save_torch(path, self.state_dict())
        write_json(f"{path}.json", {"sparsity": self.sparsity, "kept": self.kept, "total": self.total, "layers": self.layer_report()})

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        """Read a mask written by `save` (only tensors are unpickled).

        Raises `OSError` when the file cannot be read, `ValueError` when it is not a saved mask.
        """
        try:
            masks = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError) as error:
            raise ValueError(f"{path} is not a mask written by Mask.save ({type(error).__name__}: {error})") from error
        if not isinstance(masks, dict):
            raise ValueError(f"{path} holds a {type(masks).__name__}, not a mask written by Mask.save (a dict of bool tensors)")
        return cls(masks)

    def summary(self) -> str:
        """Overall and per-layer density (fraction of weights kept) as a plain-text table."""
        rows = self.layer_report()
        width = max([len("layer"), *(len(row["name"]) for row in rows)])
        lines = [
            f"{len(rows)} layers, {self.total:,} prunable weights, {self.kept:,} kept: "
            f"density {1 - self.sparsity:.4f}, sparsity {self.sparsity:.4f} (fraction removed)",
            f"{'layer':<{width}}  {'shape':<18}  {'kept':>12}  {'total':>12}  density",
        ]
        lines += [
            f"{row['name']:<{width}}  {str(tuple(row['shape'])):<18}  {row['kept']:>12,}  {row['total']:>12,}  {row['density']:.4f}"
            for row in rows
        ]
        return "\n".join(lines)

    @classmethod
    def from_torch_prune(cls, model: nn.Module) -> Mask:
        """The masks of a model pruned with `torch.nn.utils.prune`, keyed back to ``<module>.<name>``.

        Every ``<name>_mask`` buffer beside a ``<name>_orig`` parameter (``weight_mask`` for the
        usual ``prune.l1_unstructured(module, "weight", ...)``) becomes one entry; the model is not
        changed. The keys are those of the model before pruning (``layer1.0.conv1.weight``), so the
        mask applies to an unpruned model of the same architecture.
        """
        masks = {}
        for module_name, module in model.named_modules():
            parameter_names = {name for name, _ in module.named_parameters(recurse=False)}
            for buffer_name, buffer in module.named_buffers(recurse=False):
                tensor_name = buffer_name.removesuffix(TORCH_PRUNE_MASK_SUFFIX)
                if buffer_name.endswith(TORCH_PRUNE_MASK_SUFFIX) and f"{tensor_name}_orig" in parameter_names:
                    masks[f"{module_name}.{tensor_name}" if module_name else tensor_name] = buffer.bool()
        if not masks:
            raise ValueError("the model has no torch.nn.utils.prune masks (no <name>_mask buffers beside <name>_orig parameters)")
        return cls(masks)

    def to_torch_prune(self, model: nn.Module) -> None:
        """Prune `model` with ``torch.nn.utils.prune.custom_from_mask``, one call per masked parameter.

        Afterwards each masked module holds ``<name>_orig`` and ``<name>_mask`` as torch does;
        ``prune.remove(module, "weight")`` makes the pruning permanent. Raises `ValueError` first if
        the mask does not fit `model`.
        """
        self.check_fits(model)
        for name, keep in self._masks.items():
            module_name, _, tensor_name = name.rpartition(".")
            module = model.get_submodule(module_name)
            torch_prune.custom_from_mask(module, tensor_name, keep.to(getattr(module, tensor_name).device))


def global_mask(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    exclude: Iterable[str] = (),
    allow_layer_collapse: bool = False,
    layer_floor: float = 0.0,
) -> Mask:
    """Keep the k = round((1 − sparsity) · N) highest-scoring weights over all layers at once.

    scores: importance per weight, keyed by parameter name, each of the weight's shape (any
    memory format). Names in `exclude` are left out of the ranking and out of the mask (they stay
    dense and do not count in N). Exactly k weights are kept, ties included (`torch.topk`).

    layer_floor: a fraction in [0, 1) (0 = off). When the global ranking would leave some layer of
    n weights with fewer than ceil(layer_floor · n) of them (at least 1), every layer first keeps
    that many of its own highest-scoring weights and the global ranking picks the rest, so exactly
    k are still kept; where no layer falls under its floor the mask is the plain global one.
    Raises `LayerCollapseError` when a layer would keep no weight, unless `allow_layer_collapse`.
    """
    validate_sparsity(sparsity)
    validate_layer_floor(layer_floor)
    excluded = set(exclude)
    unknown = excluded - set(scores)
    if unknown:
        raise ValueError(f"exclude names parameters without scores: {sorted(unknown)}")
    ranked = {name: score for name, score in scores.items() if name not in excluded}
    if not ranked:
        raise ValueError("No scores left to rank after the exclusions.")
    parts = [score.detach().reshape(-1).float().cpu() for score in ranked.values()]
    flat = torch.cat(parts)
    if not torch.isfinite(flat).all():
        bad = [name for name, score in ranked.items() if not torch.isfinite(score).all()]
        raise ValueError(f"scores contain NaN or inf in {bad}; the scoring pass diverged.")
    keep_count = round((1 - sparsity) * flat.numel())
    keep_flat = _top(flat, keep_count)
    sizes = [part.numel() for part in parts]
    if layer_floor > 0:
        floors = [min(size, max(1, math.ceil(layer_floor * size))) for size in sizes]
        if any(int(kept.sum()) < floor for kept, floor in zip(keep_flat.split(sizes), floors)):
            keep_flat = _top_with_floors(parts, floors, keep_count, sparsity, layer_floor)
    masks: dict[str, torch.Tensor] = {}
    for (name, score), part in zip(ranked.items(), keep_flat.split(sizes)):
        masks[name] = part.reshape(score.shape).to(score.device)
    mask = Mask(masks)
    collapsed = [layer["name"] for layer in mask.layer_report() if layer["kept"] == 0]
    if collapsed and not allow_layer_collapse:
        raise LayerCollapseError(
            f"At sparsity {sparsity} these layers would keep no weight: {collapsed}. "
            "Lower the sparsity, exclude those layers, set a per-layer floor (layer_floor), or allow layer collapse explicitly."
        )
    return mask


def validate_layer_floor(layer_floor: float) -> None:
    """The per-layer floor must be a fraction in [0, 1) (0 = off)."""
    if not isinstance(layer_floor, (int, float)) or isinstance(layer_floor, bool) or math.isnan(layer_floor) or not 0 <= layer_floor < 1:
        raise ValueError(f"layer_floor is the fraction of each layer's weights always kept and must lie in [0, 1), got {layer_floor!r}")


def _top(flat: torch.Tensor, count: int) -> torch.Tensor:
    """Bool tensor of `flat`'s shape marking `count` of its largest entries (ties: `torch.topk`)."""
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.topk(flat, count, sorted=False).indices] = True
    return keep


def _top_with_floors(parts: list[torch.Tensor], floors: list[int], keep_count: int, sparsity: float, layer_floor: float) -> torch.Tensor:
    """Each part (one layer's flat scores) keeps its `floors` highest entries; the `keep_count` −
    Σ floors largest of the other entries, over all parts, are kept too. Returns the flat keep mask."""
    if sum(floors) > keep_count:
        raise ValueError(
            f"layer_floor {layer_floor} keeps {sum(floors):,} weights, more than the {keep_count:,} that sparsity {sparsity} "
            "leaves: lower the floor or the sparsity"
        )
    forced = torch.cat([_top(part, floor) for part, floor in zip(parts, floors)])
    rest = torch.cat(parts).masked_fill(forced, -math.inf)
    return forced | _top(rest, keep_count - sum(floors))


class HeldMask:
    """Holds a mask on a model while it trains; keeps pruned weights exactly zero.

    On creation the pruned weights are zeroed; their gradients are zeroed by tensor hooks (so
    momentum and weight decay never move them); if an optimizer is given, the mask is re-applied
    after each of its steps as a second guard (momentum built up before the mask was held would
    otherwise move them). State_dict keys and module classes are unchanged. Use as a context
    manager or call `remove()`.

    Each mask is held as a 0/1 tensor of its parameter's dtype, device and strides (channels_last
    included), so each guard is one plain elementwise multiply per masked tensor: no type
    promotion from bool, no strided copy.
    """

    def __init__(self, model: nn.Module, mask: Mask, optimizer: torch.optim.Optimizer | None = None) -> None:
        mask.check_fits(model)
        parameters = dict(model.named_parameters())
        self._pairs = [(parameters[name], torch.empty_like(parameters[name]).copy_(mask[name])) for name in mask]
        self._handles = [param.register_hook(lambda grad, keep=keep: grad * keep) for param, keep in self._pairs]
        if optimizer is not None:
            self._handles.append(optimizer.register_step_post_hook(lambda *_: self.reapply()))
        self.reapply()

    @torch.no_grad()
    def reapply(self) -> None:
        """Set every pruned weight to exactly zero."""
        for param, keep in self._pairs:
            param.mul_(keep)

    def remove(self) -> None:
        """Stop holding the mask (weights keep their current values)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> HeldMask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
