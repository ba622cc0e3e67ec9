"""Tests for sparsehalo.data.arrays: in-memory datasets, deterministic batching, validation splits."""

from __future__ import annotations

import pytest
import torch

from sparsehalo.data import ArrayDataset, Splits, split_validation
from sparsehalo.data.specs import CIFAR_MEAN, CIFAR_STD
from sparsehalo.errors import DataError


def indexed_dataset(n=50, **kwargs) -> ArrayDataset:
    # Labels are sample indices, so batches reveal exactly which samples they hold.
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n), **kwargs)


def collect(ds, bs, **kwargs):
    xs, ys = zip(*ds.batches(bs, **kwargs))
    return torch.cat(xs), torch.cat(ys), [len(y) for y in ys]


def test_batches_values_and_order():
    ds = indexed_dataset()
    x, y, sizes = collect(ds, 16)
    assert torch.equal(y, torch.arange(50)) and sizes == [16, 16, 16, 2]
    assert x.dtype == torch.float32 and x.shape == (50, 1, 4, 4)
    assert torch.allclose(x, ds.images.float() / 255)


def test_shuffle_is_function_of_seed_and_epoch():
    ds = indexed_dataset()
    _, a, _ = collect(ds, 16, shuffle=True, seed=3, epoch=2)
    torch.manual_seed(12345)  # global RNG state must not matter
    x, b, _ = collect(ds, 16, shuffle=True, seed=3, epoch=2)
    assert torch.equal(a, b)
    assert torch.equal(x, ds.images[b].float() / 255)  # images stay paired with their labels
    _, c, _ = collect(ds, 16, shuffle=True, seed=3, epoch=3)
    _, d, _ = collect(ds, 16, shuffle=True, seed=4, epoch=2)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    for order in (a, c, d):
        assert torch.equal(order.sort().values, torch.arange(50))  # every sample exactly once
    assert not torch.equal(a, torch.arange(50))


def test_drop_last():
    ds = indexed_dataset(10)
    assert ds.num_batches(4) == 3 and ds.num_batches(4, drop_last=True) == 2
    _, y, sizes = collect(ds, 4, shuffle=True, drop_last=True)
    assert sizes == [4, 4] and len(set(y.tolist())) == 8
    assert ds.num_batches(5, drop_last=True) == 2 and collect(ds, 5, drop_last=True)[2] == [5, 5]
    assert list(indexed_dataset(3).batches(4, drop_last=True)) == []
    with pytest.raises(DataError):
        ds.num_batches(0)


def test_normalization():
    ds = indexed_dataset(8, mean=(0.5,), std=(0.25,))
    x, _, _ = collect(ds, 3)
    assert torch.allclose(x, (ds.images.float() / 255 - 0.5) / 0.25)
    sub = ds.subset(torch.tensor([1, 3]))
    assert sub.mean == (0.5,) and torch.equal(sub.labels, torch.tensor([1, 3]))
    with pytest.raises(DataError, match="one per channel"):
        indexed_dataset(8, mean=(0.5, 0.5), std=(1.0, 1.0))


def test_dataset_validation_and_to():
    with pytest.raises(DataError):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))  # float images
    with pytest.raises(DataError):
        ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    splits = Splits(indexed_dataset(4), indexed_dataset(2), None, 10, "x")
    moved = splits.to("cpu")
    assert moved is not splits and moved.val is None and moved.name == "x"
    assert torch.equal(moved.train.images, splits.train.images)


def test_split_validation():
    ds = indexed_dataset(100)
    rest, val = split_validation(ds, 30, seed=5)
    assert len(rest) == 70 and len(val) == 30
    assert set(rest.labels.tolist()).isdisjoint(val.labels.tolist())
    assert sorted(rest.labels.tolist() + val.labels.tolist()) == list(range(100))
    assert torch.equal(val.labels, val.labels.sort().values)  # original order kept
    rest2, val2 = split_validation(ds, 30, seed=5)
    assert torch.equal(val.labels, val2.labels) and torch.equal(rest.images, rest2.images)
    assert not torch.equal(split_validation(ds, 30, seed=6)[1].labels, val.labels)
    assert len(split_validation(ds, 0.25, seed=0)[1]) == 25
    for bad in (0, 100, 1.5):
        with pytest.raises(DataError):
            split_validation(ds, bad, seed=0)


def test_augment_runs_after_scaling_and_before_normalization():
    seen = []

    def zero(x, g):
        seen.append((float(x.min()), float(x.max())))
        return torch.zeros_like(x)

    images = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    ds = ArrayDataset(images, torch.arange(4), mean=CIFAR_MEAN, std=CIFAR_STD, augment=zero)
    (x, _), = ds.batches(4)
    assert seen == [(1.0, 1.0)]
    expected = -torch.tensor(CIFAR_MEAN) / torch.tensor(CIFAR_STD)
    assert torch.allclose(x[0, :, 0, 0], expected)
