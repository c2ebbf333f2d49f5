"""Loaders that batch and augment in-memory images (`tkdlib.data.ImageArrays`) for training.

`TensorLoader` is the one the library trains with: it augments and normalizes whole batches of
tensors. `torchvision_loader` is the conventional torchvision pipeline over the same arrays, kept
to compare speeds with (``benchmarks/loader.py``). `random_crop_flip` augments batches that are
already model inputs (the second view of self-distillation, `tkdlib.train.SelfDistill`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from tkdlib.data import DatasetSpec, ImageArrays


class TensorLoader:
    """Batches from in-memory images, augmented and normalized on whole batches.

    Yields ``(x, y)``: x float32 (B, 3, H, W) in channels_last memory format, normalized with the
    dataset's mean/std (`DatasetSpec`); y int64 (B,). With ``train=True`` the order is shuffled and
    each batch gets a random H×W crop from the image padded by `pad` pixels of zeros on each side
    (`DatasetSpec.pad`: 4 for 32×32, 8 for 64×64) and a random horizontal flip; the last partial
    batch is dropped. Any image size works. The images live on `device` (CPU, or a CUDA device:
    the whole uint8 set is copied there once) and every batch is made there; the random draws
    come from a CPU generator, so batches are the same on every device. Deterministic: epoch e
    draws from a generator seeded with (seed, e), so the same seed gives the same batches.

    With `world_size` W > 1 (several processes), every rank makes the same global batch of
    `batch_size` images, augmentation included, and yields only its slice: rows
    [rank · B / W, (rank + 1) · B / W) of it; so the W slices together are the batch one process
    would load. Training batches must split evenly (`batch_size` divisible by W).
    """

    def __init__(
        self,
        data: ImageArrays,
        batch_size: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        train: bool,
        seed: int = 0,
        pad: int = 4,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
        if train and batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {world_size} processes; choose a multiple of {world_size}")
        if pad < 0:
            raise ValueError(f"pad must be ≥ 0 pixels, got {pad}")
        self.device = torch.device(device)
        self.images = torch.from_numpy(data.images).to(self.device)  # (N, H, W, 3) uint8
        self.labels = torch.from_numpy(data.labels).to(self.device)
        self.batch_size = batch_size
        # mean and std of pixel values (0..255) repeated along an image row (W·3 values, RGB RGB …), so
        # that normalizing (B·H, W·3) rows runs over long contiguous rows rather than triples
        width = data.images.shape[2]
        self.row_mean = (torch.tensor(mean, device=self.device) * 255).repeat(width)
        self.row_std = (torch.tensor(std, device=self.device) * 255).repeat(width)
        self.train = train
        self.seed = seed
        self.pad = pad
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.train else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size].to(self.device)
            with _one_cpu_thread(self.device):
                images = self.images.index_select(0, index)  # (B, H, W, 3)
                images = self._augment(images, generator) if self.train else images
                rows = self._rows(len(index))
                x = images[rows].float()  # (B / W, H, W, 3)
                x.view(-1, self.row_mean.numel()).sub_(self.row_mean).div_(self.row_std)
            yield x.permute(0, 3, 1, 2), self.labels[index[rows]]  # (B / W, 3, H, W), channels_last in memory

    def _rows(self, count: int) -> slice:
        """This rank's rows of a global batch of `count` images (all of them in one process)."""
        return slice(self.rank * count // self.world_size, (self.rank + 1) * count // self.world_size)

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return crop_and_flip(images, self.pad, generator)


def crop_and_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random crop of the image zero-padded by `pad` pixels, then a random horizontal
    flip. Channels-last (B, H, W, C) in and out, any dtype and device; `generator` is a CPU
    generator. One gather of B windows from a view, no per-pixel index."""
    batch, height, width, _ = images.shape
    device = images.device
    span = 2 * pad + 1  # possible offsets per axis
    top = torch.randint(0, span, (batch,), generator=generator).to(device)
    left = torch.randint(0, span, (batch,), generator=generator).to(device)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(device)
    padded = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))
    padded_and_mirrored = torch.cat([padded, padded.flip(2)])  # (2B, H + 2 pad, W + 2 pad, C)
    windows = padded_and_mirrored.unfold(1, height, 1).unfold(2, width, 1).permute(0, 1, 2, 4, 5, 3)  # (2B, span, span, H, W, C) view
    # The mirror of the crop at (top, left) is the crop at (top, span - 1 - left) of the mirrored image.
    source = torch.arange(batch, device=device) + batch * flip
    return windows[source, top, torch.where(flip, span - 1 - left, left)]


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """`crop_and_flip` for (B, C, H, W) batches, e.g. normalized model inputs; same layout out."""
    return crop_and_flip(images.permute(0, 2, 3, 1), pad, generator).permute(0, 3, 1, 2)


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run small CPU tensor work on one thread, as DataLoader workers do: intra-op threads gain
    nothing on batch-sized copies and stall for milliseconds when other processes hold the cores."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _PILImages(Dataset):
    """`ImageArrays` as torchvision datasets give images: ``(transform(PIL image), label)`` pairs."""

    def __init__(self, data: ImageArrays, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images = data.images
        self.labels = data.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def torchvision_loader(
    data: ImageArrays, batch_size: int, spec: DatasetSpec, train: bool, workers: int = 2, seed: int = 0
) -> DataLoader:
    """The conventional pipeline over the same arrays, to compare `TensorLoader` with: a torchvision
    `DataLoader` with `workers` processes, each image a PIL image through ``RandomCrop(H, padding=pad)``
    and ``RandomHorizontalFlip()`` (train only), ``ToTensor()`` and ``Normalize(mean, std)``.

    Yields x float32 (B, 3, H, W) (contiguous, not channels_last) and y int64 (B,); train: shuffled,
    last partial batch dropped, as `TensorLoader`.
    """
    from torchvision import transforms

    augment = [transforms.RandomCrop(data.images.shape[1], padding=spec.pad), transforms.RandomHorizontalFlip()]
    transform = transforms.Compose([*(augment if train else []), transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)])
    return DataLoader(
        _PILImages(data, transform), batch_size, shuffle=train, drop_last=train, num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
    )
