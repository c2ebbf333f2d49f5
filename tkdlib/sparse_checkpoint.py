"""Sparse checkpoints: a pruned model's state_dict stored as its kept weights plus a bitmask.

Each masked tensor is stored as two things: its kept values, in row-major order, and a packed
bitmask of its shape (`numpy.packbits`, one bit per weight, 1 = kept, big-endian bit order, zero
padding up to a whole byte). The bitmasks of all masked tensors are concatenated into one uint8
tensor and their kept values into one 1-D tensor per dtype, in state_dict order, so the file
holds two or three storages for them instead of two per layer (each storage in a `torch.save`
file costs a few hundred bytes of zip headers and alignment: 7 % of a 95 %-sparse ResNet-20's
file, had each layer its own). Every other tensor (biases, BatchNorm weights and statistics,
unmasked layers) is stored as it is. The file is a `torch.save` of plain containers and
tensors, so it loads with ``weights_only=True``, and it is written atomically; gzip-compressed
when its name ends in ``.gz`` (`tkdlib.io.save_torch`), which the readers tell by its first bytes.

Why gzip: the bitmask of a very sparse layer is mostly zero bytes, and a `torch.save` file spends
a few hundred bytes of zip headers on every tensor (a ResNet-20 has about a hundred BatchNorm
tensors); the kept values themselves shrink little (8 % for float32). Level-9 gzip took the
committed sparse students from 4.1 to 2.8 MB (26 ResNet-20s of cifar10-converged, 90-98 % sparse),
5.6 to 3.0 MB (23 ResNet-18s of tinyimagenet-converged) and 7.1 to 4.1 MB (87 of cpu-bf16).

Why a bitmask and not CSR or COO indices: a bitmask costs 1 bit per weight whatever the
sparsity, an index costs 32 (int32) or 64 (torch's COO, int64) bits per *kept* weight, so the
bitmask is smaller whenever more than 1/32 of the weights are kept, i.e. at every sparsity up to
about 97 %, and it stays within a fraction of a bit per weight of int32 indices at 98 %
(0.02 · 32 = 0.64 bits). It has a fixed size, needs no sorting and decodes exactly. At 95 %
sparsity a float32 layer costs 0.05 · 32 + 1 = 2.6 bits per weight instead of 32 (8 %).

`load_sparse` returns the dense state_dict: every unmasked tensor and every kept weight is
bitwise identical to what was saved; pruned positions come back as +0.0. `save_sparse` refuses a
tensor with a non-zero value at a pruned position (the mask was not applied), so nothing but the
sign of a pruned zero (−0.0, which multiplying a negative weight by 0 leaves) is ever lost.
Loaded tensors are contiguous (a channels_last weight comes back in the default layout, with
the same values; `load_state_dict` copies it into the model's layout).

`save_sparse_mask` writes the bitmasks alone (no weights: a ResNet-20 in 34 KB), for runs whose
result is the mask itself (mask-only cells, ``retrain_epochs = 0``); `load_sparse_mask` reads
either kind of file, `load_sparse` refuses a mask-only one.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tkdlib.io import load_torch, save_torch

FORMAT = "tkdlib.sparse_checkpoint"
VERSION = 1
MASK_ONLY_DTYPE = "mask"  # the dtype entry of a bitmask stored without its weights (save_sparse_mask)


def save_sparse(state: nn.Module | Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write `state` (a model or its state_dict) to `path`, each tensor named in `mask` as kept
    values + packed bitmask, the others dense.

    `mask` maps state_dict keys to bool tensors of the same shape (True = kept), e.g. a
    `tkdlib.masks.Mask`. Raises `TypeError` or `ValueError`, before anything is written, when a
    mask key is not in `state`, a shape or dtype does not match, or a pruned position of a
    tensor holds a non-zero value.
    """
    tensors = state.state_dict() if isinstance(state, nn.Module) else dict(state)
    _check(tensors, mask)
    entries: dict[str, Any] = {}
    bits: list[np.ndarray] = []
    values: dict[str, list[torch.Tensor]] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if name in mask:
            keep = mask[name].detach().cpu().reshape(-1)
            dtype = str(tensor.dtype).removeprefix("torch.")
            entries[name] = {"shape": list(tensor.shape), "dtype": dtype}
            bits.append(np.packbits(keep.numpy()))
            values.setdefault(dtype, []).append(tensor.reshape(-1)[keep])
        else:
            entries[name] = tensor
    packed = {
        "bits": torch.from_numpy(np.concatenate(bits) if bits else np.zeros(0, dtype=np.uint8)),
        "values": {dtype: torch.cat(parts) for dtype, parts in values.items()},
    }
    save_torch(path, {"format": FORMAT, "version": VERSION, "entries": entries, "packed": packed})


def save_sparse_mask(mask: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write only the packed bitmasks of `mask` (state_dict key → bool tensor, True = kept) to
    `path`, atomically: a file that `load_sparse_mask` reads and `load_sparse` refuses. Raises
    `TypeError`, before anything is written, when an entry is not a bool tensor."""
    for name, keep in mask.items():
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool:
            raise TypeError(f"mask {name!r} must be a torch.bool tensor")
    entries = {name: {"shape": list(keep.shape), "dtype": MASK_ONLY_DTYPE} for name, keep in mask.items()}
    bits = [np.packbits(keep.detach().cpu().reshape(-1).numpy()) for keep in mask.values()]
    packed = {"bits": torch.from_numpy(np.concatenate(bits) if bits else np.zeros(0, dtype=np.uint8)), "values": {}}
    save_torch(path, {"format": FORMAT, "version": VERSION, "entries": entries, "packed": packed})


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The dense state_dict (CPU tensors, in the saved order) of a file written by `save_sparse`.

    Raises `FileNotFoundError` when `path` does not exist and `ValueError` naming the file when it
    is not a sparse checkpoint, is of another version, or is corrupt (truncated, or a bitmask
    that does not match its shape or its number of kept values).
    """
    path = Path(path)
    entries, packed = _read(path)
    if any(isinstance(entry, dict) and entry.get("dtype") == MASK_ONLY_DTYPE for entry in entries.values()):
        raise ValueError(f"{path} holds only a mask, no weights (written by save_sparse_mask): read it with load_sparse_mask")
    return _Unpacker(path, packed).state_dict(entries)


def load_sparse_mask(path: str | Path) -> dict[str, torch.Tensor]:
    """The mask of a file written by `save_sparse` or `save_sparse_mask`: a bool tensor (True = kept) of each masked
    tensor's shape, in the saved order, without decoding the weights. Raises as `load_sparse`."""
    path = Path(path)
    entries, packed = _read(path)
    unpacker = _Unpacker(path, packed)
    return {name: unpacker.keep(name, entry).reshape(entry["shape"]) for name, entry in entries.items() if not isinstance(entry, torch.Tensor)}


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entries and packed storages of the sparse checkpoint at `path`, its format checked."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sparse checkpoint")
    try:
        content = load_torch(path)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError, ValueError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path} is not a readable sparse checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparse checkpoint written by tkdlib.sparse_checkpoint.save_sparse")
    if content.get("version") != VERSION:
        raise ValueError(f"{path} is a sparse checkpoint of version {content.get('version')!r}; this code reads version {VERSION}")
    entries, packed = content.get("entries"), content.get("packed")
    if not isinstance(entries, dict) or not isinstance(packed, dict):
        raise ValueError(f"{path} is corrupt: it has no entries")
    return entries, packed


def _check(tensors: Mapping[str, Any], mask: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state entry {name!r} is a {type(tensor).__name__}, not a tensor")
    for name, keep in mask.items():
        if name not in tensors:
            raise ValueError(f"mask key {name!r} is not in the state_dict; was the mask made for another model?")
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool:
            raise TypeError(f"mask {name!r} must be a torch.bool tensor")
        if keep.shape != tensors[name].shape:
            raise ValueError(f"mask {name!r} has shape {tuple(keep.shape)} but the tensor has shape {tuple(tensors[name].shape)}")
        stray = int((tensors[name].detach()[~keep.to(tensors[name].device)] != 0).sum())
        if stray:
            raise ValueError(
                f"{name!r} has {stray} non-zero values at pruned positions: apply the mask first "
                "(Mask.apply(model)), or the sparse checkpoint would not load back the same weights"
            )


class _Unpacker:
    """Walks the packed bitmasks and kept values in state_dict order, checking that they agree."""

    def __init__(self, path: Path, packed: dict[str, Any]) -> None:
        self.path = path
        bits, values = packed.get("bits"), packed.get("values")
        if not isinstance(bits, torch.Tensor) or bits.dtype != torch.uint8 or bits.dim() != 1 or not isinstance(values, dict):
            raise ValueError(f"{path} is corrupt: its packed bitmasks or values are missing")
        self.bits = bits.numpy()
        self.values = values
        self.bit_offset = 0
        self.value_offsets = dict.fromkeys(values, 0)

    def state_dict(self, entries: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = {name: entry if isinstance(entry, torch.Tensor) else self._dense(name, entry) for name, entry in entries.items()}
        if self.bit_offset != len(self.bits) or any(self.value_offsets[d] != self.values[d].numel() for d in self.values):
            raise ValueError(f"{self.path} is corrupt: it holds more packed bits or values than its entries use")
        return state

    def keep(self, name: str, entry: Any) -> torch.Tensor:
        """The next bitmask, for the packed entry `name`: a flat bool tensor (True = kept)."""
        try:
            shape, _ = list(entry["shape"]), entry["dtype"]
        except (TypeError, KeyError) as error:
            raise ValueError(f"{self.path} is corrupt: entry {name!r} is neither a tensor nor a packed tensor") from error
        numel = math.prod(shape)
        size = math.ceil(numel / 8)
        chunk = self.bits[self.bit_offset : self.bit_offset + size]
        if len(chunk) != size:
            raise ValueError(f"{self.path} is corrupt: the bitmask of {name!r} is cut short")
        self.bit_offset += size
        keep_all = np.unpackbits(chunk)
        if keep_all[numel:].any():
            raise ValueError(f"{self.path} is corrupt: the bitmask of {name!r} has bits set past its {numel} weights")
        return torch.from_numpy(keep_all[:numel].astype(bool))

    def _dense(self, name: str, entry: Any) -> torch.Tensor:
        keep = self.keep(name, entry)
        dtype = entry["dtype"]
        kept = int(keep.sum())
        start = self.value_offsets.get(dtype)
        if start is None or start + kept > self.values[dtype].numel():
            raise ValueError(f"{self.path} is corrupt: {name!r} has fewer stored values than its bitmask keeps")
        self.value_offsets[dtype] = start + kept
        flat = self.values[dtype]
        dense = torch.zeros(keep.numel(), dtype=flat.dtype)
        dense[keep] = flat[start : start + kept]
        return dense.reshape(entry["shape"])
