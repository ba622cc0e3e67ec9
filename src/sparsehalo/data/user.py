"""A user's own datasets: ``data.name = "package.module:factory"`` (see :mod:`sparsehalo.imports`).

The factory takes ``data.kwargs`` (and ``data_dir`` where its signature has it) and returns map-style
``torch.utils.data.Dataset`` objects whose items are ``(input, integer label)``: a mapping with
``"train"``, ``"test"`` and optionally ``"val"`` and ``"num_classes"``, or a tuple ``(train, test)`` or
``(train, val, test)`` (``val`` may be None).

Where the data fits in memory (``data.in_memory``: ``"auto"`` stacks it when its inputs take at most a
quarter of this machine's memory), every item is read once and the splits become
:class:`~.arrays.ArrayDataset` tensors batched by indexing, the fast path of the bundled datasets.
That reads each item once: a dataset that draws a random transform per item then keeps the one it
drew, so give such a dataset ``data.in_memory = "no"``: :class:`StreamDataset` reads it through a
``DataLoader`` (``data.workers`` processes) every epoch.  Both paths visit the examples in the same
order, a function of (seed, epoch) only, so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import imports
from ..errors import DataError
from .arrays import ArrayDataset, Splits, _check_batch_size, count_batches, shard_range, shuffle_order

IN_MEMORY = ("auto", "yes", "no")


class StreamDataset:
    """A map-style dataset read through a ``DataLoader`` each epoch, with :class:`~.arrays.ArrayDataset`'s
    batching interface (the same shuffle order for the same seed and epoch)."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu", workers: int = 0):
        self.dataset = dataset
        self.device = torch.device(device)
        self.workers = workers
        self.augment = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return f"StreamDataset(n={len(self)}, {type(self.dataset).__name__}, device={self.device}, workers={self.workers})"

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(torch.as_tensor(self.dataset[0][0]).shape)

    def to(self, device: torch.device | str) -> StreamDataset:
        return StreamDataset(self.dataset, device, self.workers)

    def subset(self, index: torch.Tensor) -> StreamDataset:
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        return StreamDataset(Subset(self.dataset, index.tolist()), self.device, self.workers)

    def with_augment(self, augment) -> StreamDataset:
        if augment is not None:
            raise DataError("a user's dataset applies its own transforms: augment does not apply to it")
        return self

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return count_batches(len(self), batch_size, drop_last)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, shard: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches on :attr:`device`, in :func:`~.arrays.shuffle_order` when shuffling
        (``shard=(rank, size)``: rank's contiguous part of each batch, see :func:`~.arrays.shard_range`)."""
        _check_batch_size(batch_size)
        order = shuffle_order(len(self), seed, epoch).tolist() if shuffle else list(range(len(self)))
        # Its own generator (for the workers' seeds): the global one, which dropout draws from, stays
        # as it is in the stacked path.
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        groups = [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
        if drop_last and groups and len(groups[-1]) < batch_size:
            groups.pop()
        if shard is not None:
            groups = [group[slice(*shard_range(len(group), *shard))] for group in groups]
        loader = DataLoader(self.dataset, batch_sampler=groups, generator=g,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), torch.as_tensor(y).long().to(self.device, non_blocking=True)


def _parts(out: Any, name: str) -> tuple[Dataset, Dataset | None, Dataset, int | None]:
    """(train, val, test, num_classes) from what the factory returned."""
    if isinstance(out, Mapping):
        unknown = set(out) - {"train", "val", "test", "num_classes"}
        if unknown or "train" not in out or "test" not in out:
            raise DataError(f"data.name {name!r} returned a mapping with keys {sorted(out)}; it needs train and test "
                            "(val and num_classes optional) and nothing else")
        return out["train"], out.get("val"), out["test"], out.get("num_classes")
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return (out[0], None, out[1], None) if len(out) == 2 else (out[0], out[1], out[2], None)
    raise DataError(f"data.name {name!r} returned {type(out).__name__}; return {{'train': ..., 'test': ...}}, "
                    "(train, test) or (train, val, test) of map-style datasets")


def _check(ds: Any, split: str, name: str) -> None:
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise DataError(f"data.name {name!r}: the {split} split is a {type(ds).__name__}, not a map-style dataset "
                        "(__getitem__ and __len__)")
    if len(ds) == 0:
        raise DataError(f"data.name {name!r}: the {split} split is empty")
    item = ds[0]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"data.name {name!r}: {split} items must be (input, label), got {type(item).__name__}")


def _stack(ds: Dataset, split: str, name: str) -> ArrayDataset:
    """Every item of ``ds`` read once, stacked (through ``DataLoader``'s collation)."""
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=512, shuffle=False):
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    x, y = torch.cat(xs), torch.cat(ys)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"data.name {name!r}: {split} labels must be one integer per item, got {y.dtype} {list(y.shape[1:])}")
    return ArrayDataset(x, y, raw=True)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on POSIX: assume a small machine
        return 8 << 30


def _fits(sets: list[Dataset]) -> bool:
    one = torch.as_tensor(sets[0][0][0])
    need = sum(len(s) for s in sets) * one.numel() * one.element_size()
    return need <= _memory_bytes() // 4


def _largest_label(d: ArrayDataset | StreamDataset, workers: int) -> int:
    """The largest label of a split: from the stacked tensor, a ``targets`` / ``labels`` attribute, or
    (the slow way, once) by reading every item."""
    if isinstance(d, ArrayDataset):
        return int(d.labels.max())
    for attr in ("targets", "labels"):
        known = getattr(d.dataset, attr, None)
        if known is not None and len(known) == len(d.dataset):
            return int(torch.as_tensor(known).max())
    loader = DataLoader(d.dataset, batch_size=512, num_workers=workers, generator=torch.Generator().manual_seed(0))
    return max(int(torch.as_tensor(y).max()) for _, y in loader)


def load_user_dataset(name: str, kwargs: Mapping[str, Any], data_dir: str | os.PathLike | None = None, *,
                      in_memory: str = "auto", workers: int = 0) -> tuple[Splits, bool]:
    """The splits a user's factory returns, and whether they were stacked in memory.

    ``num_classes``: the factory's own, else the train split's ``classes`` attribute, else the largest
    label + 1 over the splits (streamed splits: from a ``targets`` or ``labels`` attribute, else by
    reading every item once, which the factory's ``num_classes`` avoids).

    Raises:
        ConfigError: from :func:`sparsehalo.imports.call`.
        DataError: for a result of another shape, a split that is not a map-style dataset of
            ``(input, label)`` items, labels that are not integers, or an unknown ``in_memory``.
    """
    if in_memory not in IN_MEMORY:
        raise DataError(f"data.in_memory must be one of {', '.join(IN_MEMORY)}, got {in_memory!r}")
    offered = {} if data_dir is None else {"data_dir": str(data_dir)}
    train, val, test, num_classes = _parts(imports.call(name, "data.name", kwargs, offered), name)
    sets = {"train": train, "val": val, "test": test}
    for split, ds in sets.items():
        if ds is not None:
            _check(ds, split, name)
    stacked = in_memory == "yes" or (in_memory == "auto" and _fits([s for s in sets.values() if s is not None]))
    if stacked:
        made = {k: None if ds is None else _stack(ds, k, name) for k, ds in sets.items()}
    else:
        made = {k: None if ds is None else StreamDataset(ds, workers=workers) for k, ds in sets.items()}
    if num_classes is None and getattr(train, "classes", None) is not None:
        num_classes = len(train.classes)
    if num_classes is None:
        num_classes = 1 + max(_largest_label(d, workers) for d in made.values() if d is not None)
    return Splits(made["train"], made["test"], made["val"], num_classes, name), stacked
