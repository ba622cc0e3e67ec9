#!/usr/bin/env python3
"""Data pipeline: sparsehalo's on-device batches against a standard per-sample DataLoader (images/s).

    .venv/bin/python benchmarks/data_pipeline.py [--quick] [--threads 1] [--cifar-dir ../shared/datasets]

MNIST: uint8 tensors indexed a batch at a time and converted to float, against
`torch.utils.data.DataLoader` over a map-style dataset returning one float image and label per item
(shuffle, batch 100, num_workers 0, the default collate). CIFAR-10 (when its archive is found): the same
with random crop (pad 4) + horizontal flip + normalization, ours batched, the DataLoader's per image.
Only batch production is timed (no model).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


import torch  # noqa: E402

from sparsehalo.data import load_dataset  # noqa: E402
from sparsehalo.errors import DataError  # noqa: E402


class PerSample(torch.utils.data.Dataset):
    """The usual map-style dataset: one image at a time, transformed in Python."""

    def __init__(self, ds, augment: bool):
        self.images, self.labels, self.augment = ds.images, ds.labels, augment
        self.mean = None if ds.mean is None else torch.tensor(ds.mean).view(-1, 1, 1)
        self.std = None if ds.std is None else torch.tensor(ds.std).view(-1, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float() / 255.0
        if self.augment:
            x = torch.nn.functional.pad(x, (4, 4, 4, 4))
            top, left = torch.randint(0, 9, (2,)).tolist()
            x = x[:, top:top + 32, left:left + 32]
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x, self.labels[i]


def rate(make_iter, n_images: int) -> float:
    t = time.perf_counter()
    for x, y in make_iter():
        pass
    return n_images / (time.perf_counter() - t)


def compare(name: str, ds, batch: int, augment: bool, limit: int) -> None:
    if len(ds) > limit:
        ds = ds.subset(torch.arange(limit))
    n = len(ds)
    loader = torch.utils.data.DataLoader(PerSample(ds, augment), batch_size=batch, shuffle=True, num_workers=0)
    ours = rate(lambda: ds.batches(batch, shuffle=True, seed=0, epoch=0), n)
    theirs = rate(lambda: iter(loader), n)
    print(f"{name:<28}{ours:>14,.0f}{theirs:>14,.0f}{ours / theirs:>10.1f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cifar-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    limit = 10_000 if args.quick else 60_000
    print(f"images/s, {torch.get_num_threads()} thread(s), CPU")
    print(f"{'':<28}{'sparsehalo':>14}{'DataLoader':>14}{'ratio':>10}")
    compare("MNIST, batch 100", load_dataset("mnist").train, 100, False, limit)
    try:
        cifar = load_dataset("cifar10", args.cifar_dir, augment=True).train
    except DataError as exc:
        print(f"CIFAR-10 skipped: {exc}")
        return 0
    compare("CIFAR-10 + crop/flip, b 128", cifar, 128, True, limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
