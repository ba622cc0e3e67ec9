#!/usr/bin/env python3
"""LeNet-300-100 on the bundled MNIST with lightning.Trainer and SparsehaloCallback: HALO asked for a sparsity
(target mode), then one global magnitude prune to exactly that sparsity at the end, no fine-tuning:

    .venv/bin/python examples/lightning_lenet300.py                        # 3 epochs on 20,000 images, ~10 s on a CPU core
    .venv/bin/python examples/lightning_lenet300.py --epochs 1 --train-size 2000 --sparsity 0.95

Needs ``pip install 'sparsehalo[lightning]'``.  Prints what is penalized, the test accuracy of the trained
network, the sparsity table after the prune and the test accuracy of the pruned network.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl  # after sparsehalo.integrations.lightning, which says how to install it
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import sparsehalo
from sparsehalo.data import load_dataset
from sparsehalo.integrations.lightning import SparsehaloCallback


class LitLeNet(pl.LightningModule):
    """The user's LightningModule: plain cross-entropy; the callback adds the penalty."""

    def __init__(self, lr: float, steps: int):
        super().__init__()
        self.net = sparsehalo.models.build("lenet300")
        self.lr, self.steps = lr, steps

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/ce", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self.net(x).argmax(1) == y).float().mean() * 100, prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        # made before the callback adds the scales' group: the callback makes that group follow it
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(split, size: int, batch: int, shuffle: bool) -> DataLoader:
    x = split.images[:size].float().div_(255).sub_(0.1307).div_(0.3081)
    return DataLoader(TensorDataset(x, split.labels[:size]), batch_size=batch, shuffle=shuffle)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=20000)
    ap.add_argument("--test-size", type=int, default=10000)
    ap.add_argument("--sparsity", type=float, default=0.9, help="target and prune sparsity")
    ap.add_argument("--xi", type=float, default=1e-4)
    ap.add_argument("--psi", type=float, default=1e-4)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    data = load_dataset("mnist")
    train = loader(data.train, args.train_size, 128, shuffle=True)
    test = loader(data.test, args.test_size, 1000, shuffle=False)

    module = LitLeNet(args.lr, args.epochs * len(train))
    callback = SparsehaloCallback("halo", xi=args.xi, psi=args.psi, target_sparsity=args.sparsity,
                                  prune_sparsity=args.sparsity, verbose=False)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train, test)  # validates on the test split after each epoch, prunes at the end
    print(callback.penalty.summary(module.net))  # what was penalized (and pruned)
    trained = trainer.callback_metrics["test_acc"].item()
    stats = callback.penalty.stats()
    print(f"trained: test accuracy {trained:.2f}%, measured sparsity {stats['target_measured']:.2%} "
          f"(|w| at zero, as the controller counts it)")
    print(callback.table)  # the sparsity table after the prune
    pruned = trainer.validate(module, test, verbose=False)[0]["test_acc"]
    print(f"pruned to {args.sparsity:g} of {callback.table.total:,} weights, no fine-tuning: "
          f"test accuracy {pruned:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
