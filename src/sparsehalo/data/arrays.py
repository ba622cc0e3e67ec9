"""In-memory image datasets and deterministic batching.

Small vision datasets (MNIST-sized) fit on any device as a uint8 tensor, so batches are made by
indexing the whole tensor at once instead of going through a ``DataLoader`` with per-sample Python
calls.  Shuffle order (and random augmentation, when a dataset has one) depends only on
``(seed, epoch)``, which makes a resumed run see exactly the batches an uninterrupted run would have
seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ..errors import DataError

_U64 = (1 << 64) - 1

# Added to the shuffle seed to seed augmentation, so the two random streams of one epoch differ
# (the 64-bit golden-ratio constant: any large odd number far from small seed/epoch values works).
_AUGMENT_SEED_OFFSET = 0x9E37_79B9_7F4A_7C15

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``augment(x, generator) -> x``: a random transform of a float batch ``[B, C, H, W]`` in [0, 1]."""


def _generator(seed: int) -> torch.Generator:
    # A CPU generator gives the same permutation whatever device the data lives on.
    g = torch.Generator(device="cpu")
    g.manual_seed(seed & _U64)
    return g


def shuffle_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which an epoch visits ``n`` examples: a function of ``(seed, epoch)`` only (on the CPU)."""
    return torch.randperm(n, generator=_generator(seed * 1_000_003 + epoch))


class ArrayDataset:
    """Images (or any inputs) and labels held whole on one device.

    Attributes:
        images: uint8 tensor ``[N, C, H, W]``, scaled to [0, 1] in batches; or, with ``raw``, inputs of any
            dtype and shape ``[N, ...]`` (a user's dataset, :mod:`.user`), batched as they are.
        labels: int64 tensor ``[N]``.
        mean: per-channel mean subtracted from batches (after scaling to [0, 1]), or None.
        std: per-channel std batches are divided by, or None.
        augment: random transform applied by :meth:`batches` to each batch after scaling to [0, 1] and
            before normalization (e.g. :func:`sparsehalo.data.augment.random_crop_flip`), or None.
            Set it on a training set only; :func:`split_validation` never passes it to the
            validation part.
        raw: the inputs are batched unchanged (no scaling, normalization or augmentation).

    The tensors may be shared with an in-process cache (see :func:`sparsehalo.data.load_dataset`):
    treat them as read-only.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Augment | None = None,
        raw: bool = False,
    ) -> None:
        if raw:
            if images.dim() < 1 or mean is not None or augment is not None:
                raise DataError("raw inputs need a leading example dimension and take no mean, std or augment")
        elif images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"images must be a uint8 [N, C, H, W] tensor, got {images.dtype} {list(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"labels must be [N] with N={images.shape[0]}, got {list(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise DataError(f"labels must be integers, got {labels.dtype}")
        if labels.device != images.device:
            raise DataError(f"images on {images.device} but labels on {labels.device}")
        if augment is not None and not callable(augment):
            raise DataError(f"augment must be callable(x, generator) or None, got {augment!r}")
        if (mean is None) != (std is None):
            raise DataError("set both mean and std for normalization, or neither")
        if mean is not None:
            channels = images.shape[1]
            mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
            if len(mean) != channels or len(std) != channels:
                raise DataError(f"mean/std need {channels} values (one per channel), got {len(mean)}/{len(std)}")
            if any(s <= 0 for s in std):
                raise DataError(f"std values must be positive, got {std}")
        self.images = images
        self.labels = labels.long()
        self.mean: tuple[float, ...] | None = mean
        self.std: tuple[float, ...] | None = std
        self.augment: Augment | None = augment
        self.raw = raw

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        norm = f", mean={self.mean}, std={self.std}" if self.mean is not None else ", raw" if self.raw else ""
        aug = f", augment={getattr(self.augment, '__name__', self.augment)}" if self.augment is not None else ""
        return f"ArrayDataset(n={len(self)}, shape={list(self.images.shape[1:])}, device={self.device}{norm}{aug})"

    @property
    def example_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.images.shape[1:])

    @property
    def device(self) -> torch.device:
        """Device holding the images and labels."""
        return self.images.device

    def to(self, device: torch.device | str) -> ArrayDataset:
        """Return a new dataset with both tensors on ``device``."""
        return ArrayDataset(self.images.to(device), self.labels.to(device), self.mean, self.std, self.augment, self.raw)

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        """Return the samples selected by ``index`` (int64 indices or a bool mask), as a copy."""
        index = torch.as_tensor(index, device=self.device)
        return ArrayDataset(self.images[index], self.labels[index], self.mean, self.std, self.augment, self.raw)

    def with_augment(self, augment: Augment | None) -> ArrayDataset:
        """Return a dataset sharing these tensors, with ``augment`` set (None turns augmentation off)."""
        if self.raw and augment is not None:
            raise DataError("a user's dataset applies its own transforms: augment does not apply to it")
        return ArrayDataset(self.images, self.labels, self.mean, self.std, augment, self.raw)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields for these arguments."""
        return count_batches(len(self), batch_size, drop_last)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches on the dataset's device.

        Args:
            batch_size: samples per batch; the last one may be smaller unless ``drop_last``.
            shuffle: visit samples in a random order that depends only on ``(seed, epoch)``.
            seed: run seed.
            epoch: epoch number, so each epoch gets its own order.
            drop_last: skip a final incomplete batch.
            shard: ``(rank, size)``: yield only rank's contiguous part of each batch
                (:func:`shard_range`); augmentation is drawn for the whole batch first, so the parts
                of all ranks together are the single-process batch.

        Yields:
            ``x`` float32 ``[B, C, H, W]`` scaled to [0, 1], augmented if :attr:`augment` is set, then
            normalized if mean/std are set; and ``y`` int64 ``[B]``.  With augmentation the batches
            are still a pure function of ``(seed, epoch, batch_size)``.
        """
        count = self.num_batches(batch_size, drop_last)
        order = None
        if shuffle:
            order = shuffle_order(len(self), seed, epoch).to(self.device)
        # One generator per epoch, separate from the shuffle's, so turning augmentation on or off
        # does not change the sample order.
        aug_gen = None if self.augment is None else _generator(seed * 1_000_003 + epoch + _AUGMENT_SEED_OFFSET)
        shift = scale = None
        if self.mean is not None:
            shape = (1, -1, 1, 1)
            shift = torch.tensor(self.mean, dtype=torch.float32, device=self.device).view(shape)
            scale = torch.tensor(self.std, dtype=torch.float32, device=self.device).view(shape)
        for b in range(count):
            lo, hi = b * batch_size, min((b + 1) * batch_size, len(self))
            part = slice(None)
            if shard is not None:
                start, stop = shard_range(hi - lo, *shard)
                if aug_gen is None:
                    lo, hi = lo + start, lo + stop
                else:  # the whole batch's random draws, then this rank's part of them
                    part = slice(start, stop)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            if self.raw:  # a copy, as in the scaled path: the model may change its input in place
                yield self.images[idx].clone() if order is None else self.images[idx], self.labels[idx]
                continue
            x = self.images[idx].to(torch.float32).div_(255.0)
            if aug_gen is not None:
                x = self.augment(x, aug_gen)[part]
            if shift is not None:
                x = x.sub_(shift).div_(scale)
            yield x, self.labels[idx][part]


def shard_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank's part of ``n`` examples split in ``size`` contiguous parts whose sizes
    differ by at most one (the larger first, as ``torch.tensor_split``)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def count_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches of ``batch_size`` in ``n`` examples (the last one partial unless ``drop_last``)."""
    _check_batch_size(batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")


@dataclass
class Splits:
    """Train/test (and optional validation) datasets of one named dataset.

    Attributes:
        train: training set (the only split that may carry an ``augment``).
        test: test set.
        val: validation set carved out of train, or None.
        num_classes: number of label values.
        name: which data was loaded; can name a variant, e.g. ``"cifar10-jpeg"`` when
            ``load_dataset("cifar10")`` fell back to the JPEG copy.
        source: the file the data came from, when it came from one file (archives), else None.
        classes: class names in label order, when the dataset has them, else None.
    """

    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None
    num_classes: int
    name: str
    source: str | None = None
    classes: tuple[str, ...] | None = None

    def to(self, device: torch.device | str) -> Splits:
        """Return new splits with every dataset on ``device``."""
        return Splits(
            train=self.train.to(device),
            test=self.test.to(device),
            val=None if self.val is None else self.val.to(device),
            num_classes=self.num_classes,
            name=self.name,
            source=self.source,
            classes=self.classes,
        )


def split_validation(train: ArrayDataset, val_size: int | float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """Carve a validation set out of ``train``, deterministically by ``seed``.

    Args:
        train: the full training set.
        val_size: number of validation samples (an int), or a fraction in (0, 1) of ``train``.
        seed: selects which samples go to validation.

    Returns:
        ``(train_rest, val)``; both keep the original sample order and they are disjoint.  ``train_rest``
        keeps ``train.augment``; ``val`` never has one (validation must see the data as test does).

    Raises:
        DataError: ``val_size`` leaves no sample for validation or for training.
    """
    n = len(train)
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise DataError(f"val_size must be a count or a fraction, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise DataError(f"val_size as a fraction must be in (0, 1), got {val_size}")
        count = round(val_size * n)
    else:
        count = val_size
    if not 0 < count < n:
        raise DataError(f"val_size={val_size} must leave at least one sample in both splits of {n} training samples")
    # Offset the seed so the split is not correlated with the epoch-0 shuffle of the same seed.
    perm = torch.randperm(n, generator=_generator(seed * 1_000_003 + 0x5EED_5EED))
    val_idx, _ = perm[:count].sort()
    rest_idx, _ = perm[count:].sort()
    return train.subset(rest_idx), train.subset(val_idx).with_augment(None)
