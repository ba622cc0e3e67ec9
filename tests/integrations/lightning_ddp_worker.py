"""One rank of the 2-process DDP test (launched by test_lightning.py with LOCAL_RANK etc. set):
trains a tiny module with SparsehaloCallback (target mode, prune at the end) and saves what it ended with."""

import os
import sys

import torch

torch.set_num_threads(1)

import lightning.pytorch as pl
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsehalo.integrations.lightning import SparsehaloCallback


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(int(os.environ["LOCAL_RANK"]))  # different on each rank: DDP broadcasts rank 0's
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.seen = 0.0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen += float(x.sum())
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)}


def main(out: str) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
    module = Tiny()
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, target_sparsity=0.6, prune_sparsity=0.6, verbose=False)
    trainer = pl.Trainer(accelerator="cpu", devices=2, num_nodes=1, strategy=DDPStrategy(process_group_backend="gloo"),
                         max_epochs=2, callbacks=[cb], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, DataLoader(data, batch_size=8, shuffle=True))
    rank = trainer.global_rank
    torch.save({"weights": module.net.state_dict(), "penalty": cb.penalty.state_dict(), "seen": module.seen,
                "steps": trainer.global_step, "world": trainer.world_size,
                "total_steps": cb.penalty.controller.total_steps}, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
