"""Tests for sparsehalo.data.synthetic: the tiny generated dataset used by fast tests."""

from __future__ import annotations

import torch

import sparsehalo.data as data
from sparsehalo.data import load_dataset


def test_synthetic_deterministic_and_learnable():
    s = load_dataset("synthetic", val_size=64, seed=0)
    assert s.name == "synthetic" and s.num_classes == 10
    assert s.train.images.shape == (448, 1, 28, 28) and s.train.images.dtype == torch.uint8
    assert len(s.val) == 64 and len(s.test) == 256
    again = load_dataset("synthetic", val_size=64, seed=0)
    assert torch.equal(s.train.images, again.train.images) and torch.equal(s.test.labels, again.test.labels)
    other = data.make_synthetic(seed=1)
    assert not torch.equal(other.train.images, data.make_synthetic().train.images)
    assert torch.bincount(data.make_synthetic().train.labels).tolist() == [52, 52] + [51] * 8

    # Learnable: a nearest-class-mean classifier fit on train does well on test.
    x_tr = s.train.images.flatten(1).float()
    centroids = torch.stack([x_tr[s.train.labels == k].mean(0) for k in range(10)])
    pred = torch.cdist(s.test.images.flatten(1).float(), centroids).argmin(1)
    assert (pred == s.test.labels).float().mean() > 0.9
