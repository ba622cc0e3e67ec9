"""SparsehaloCallback for Lightning: the loss and gradients, the scales' group under a scheduler, logging,
the prune at the end, exact resume from a Lightning checkpoint, and 2-process DDP."""

import importlib
import os
import socket
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from support import ROOT, require_extra
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = require_extra("lightning.pytorch", "lightning")
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from sparsehalo.integrations.lightning import SparsehaloCallback

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's advice on workers and loggers
HERE = os.path.dirname(os.path.abspath(__file__))


class Tiny(pl.LightningModule):
    """8 -> 16 -> 3 MLP, SGD with momentum and a per-step LambdaLR made in configure_optimizers."""

    def __init__(self, lr=0.1, decay=0.1):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.lr, self.decay = lr, decay

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1.0 + self.decay * s))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loader(n=64, batch=16):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))
    return DataLoader(data, batch_size=batch, shuffle=False)


def trainer(tmp_path, callbacks, **kw):
    kw.setdefault("logger", False)
    return pl.Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path, callbacks=callbacks,
                      enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                      enable_progress_bar=False, enable_model_summary=False, **kw)


class Probe(pl.Callback):
    """Records, before each optimizer step, the gradients and every group's learning rate."""

    def __init__(self):
        self.grads, self.lrs, self.losses = [], [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append({id(p): p.grad.clone() for g in optimizer.param_groups for p in g["params"]})
        self.lrs.append([g["lr"] for g in optimizer.param_groups])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().clone())


class Memory(Logger):
    """A logger that keeps every metrics dict."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "memory", 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.rows.append(dict(metrics))


def test_the_optimizer_sees_loss_plus_penalty_with_hand_computed_gradients(tmp_path):
    class Linear(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 3, bias=False)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return {"loss": F.cross_entropy(self.fc(x), y)}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 4, generator=g), torch.tensor([0, 2, 1, 1, 0])
    module = Linear()
    w = module.fc.weight.detach().clone()
    xi, psi, lam, eps = 0.01, 0.02, 0.7, 1e-3
    cb = SparsehaloCallback("halo", xi=xi, psi=psi, lambda_init=lam, eps=eps, verbose=False)
    probe = Probe()
    trainer(tmp_path, [cb, probe], max_steps=1).fit(module, DataLoader(TensorDataset(x, y), batch_size=5))

    # by hand: d CE / d W = (softmax(x W^T) - onehot)^T x / N; HALO: xi |W| / (lam^2 + eps^2) + psi |lam|
    d = lam**2 + eps**2
    ce_grad = (torch.softmax(x @ w.T, 1) - F.one_hot(y, 3).float()).T @ x / 5
    grads = probe.grads[0]
    scale = cb.penalty.scales["fc__weight"]
    torch.testing.assert_close(grads[id(module.fc.weight)], ce_grad + xi * w.sign() / d, rtol=0, atol=1e-6)
    torch.testing.assert_close(grads[id(scale)], -2 * xi * w.abs() * lam / d**2 + psi, rtol=0, atol=1e-6)
    expected_loss = F.cross_entropy(x @ w.T, y) + xi * w.abs().sum() / d + psi * lam * w.numel()
    torch.testing.assert_close(probe.losses[0], expected_loss, rtol=0, atol=1e-6)
    assert "training_step" not in vars(module)  # the wrapper is gone after fit


class OneCycle(Tiny):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=6)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@pytest.mark.parametrize("cls", [Tiny, OneCycle], ids=["LambdaLR", "OneCycleLR"])
def test_the_scales_group_follows_a_scheduler_made_before_it(tmp_path, cls):
    probe = Probe()
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, lr=0.05, verbose=False)
    t = trainer(tmp_path, [cb, probe], max_steps=5)
    t.fit(cls(lr=0.1, decay=1.0), loader(n=96))
    net_group, scales_group = t.optimizers[0].param_groups
    initial = net_group["initial_lr"]  # 0.1 for LambdaLR, max_lr / 25 for OneCycleLR
    assert scales_group["name"] == "penalty:halo" and scales_group["weight_decay"] == 0.0
    nets = [net for net, _ in probe.lrs]
    assert len(set(nets)) == 5  # the schedule moved the network's rate at every step
    for net, scales in probe.lrs:
        assert scales == pytest.approx(net * 0.05 / initial, rel=1e-12)
    if cls is Tiny:
        assert nets == pytest.approx([0.1 / (1 + step) for step in range(5)])
        assert len(t.lr_scheduler_configs[0].scheduler.lr_lambdas) == 2


def test_stats_logged_and_the_prune_at_the_end_is_exact(tmp_path):
    module, memory = Tiny(), Memory()
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, target_sparsity=0.75, prune_sparsity=0.75, verbose=False)
    t = trainer(tmp_path, [cb], max_epochs=2, logger=memory, log_every_n_steps=1)
    t.fit(module, loader())
    assert cb.penalty.controller.total_steps == 8  # 2 epochs x 4 batches, from estimated_stepping_batches
    weights = [module.net[0].weight, module.net[2].weight]
    total = sum(w.numel() for w in weights)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.75 * total)
    assert all(int((m.bias == 0).sum()) == 0 for m in (module.net[0], module.net[2]))  # biases are not pruned
    assert cb.table.sparsity == round(0.75 * total) / total and set(cb.mask) == {"net.0.weight", "net.2.weight"}
    logged = {k for row in memory.rows for k in row}
    assert {"penalty/value", "penalty/scale_mean", "penalty/target_strength", "penalty/target_measured"} <= logged
    final = memory.rows[-1]
    assert final["sparsity"] == cb.table.sparsity and "sparsity/net.0.weight" in final
    assert t.callback_metrics["penalty/scale_max"] < 1.0  # HALO shrank the scales from lambda_init = 1


def _fit(tmp_path, ckpt=None, stop_after_first=False, **kw):
    module = Tiny()
    cb = SparsehaloCallback("halo", xi=1e-3, psi=1e-3, target_sparsity=0.5, verbose=False)
    callbacks = [cb]
    if stop_after_first:
        class Stop(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                trainer.should_stop = True
        callbacks += [Stop(), ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="first", save_top_k=-1)]
    trainer(tmp_path, callbacks, max_epochs=3, **kw).fit(module, loader(), ckpt_path=ckpt)
    return module.state_dict(), cb.penalty.state_dict()


def test_resume_from_a_lightning_checkpoint_is_exact(tmp_path):
    weights, penalty = _fit(tmp_path / "a")
    _fit(tmp_path / "b", stop_after_first=True)
    ckpt = tmp_path / "b" / "ckpt" / "first.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    (entry,) = saved["sparsehalo"].values()
    assert entry["state"]["controller.step"] == 4 and entry["total_steps"] == 12
    assert not torch.equal(entry["state"]["scales.net__0__weight"], torch.ones(16, 8))
    resumed_weights, resumed_penalty = _fit(tmp_path / "b", ckpt=str(ckpt))
    assert resumed_weights.keys() == weights.keys() and resumed_penalty.keys() == penalty.keys()
    for k in weights:  # exactly: same bits
        assert torch.equal(resumed_weights[k], weights[k]), k
    for k in penalty:
        assert torch.equal(resumed_penalty[k], penalty[k]), k
    # the control: the same checkpoint without the penalty's entry does not continue the run
    del saved["sparsehalo"]
    torch.save(saved, tmp_path / "bare.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, fresh_penalty = _fit(tmp_path / "c", ckpt=str(tmp_path / "bare.ckpt"))
    assert any("no sparsehalo penalty state" in str(w.message) for w in caught)
    assert not torch.equal(fresh_penalty["scales.net__0__weight"], penalty["scales.net__0__weight"])


def test_two_ddp_processes_end_with_identical_scales_and_weights(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK="0", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "lightning_ddp_worker.py"), str(tmp_path)],
                              env=dict(env, LOCAL_RANK=str(r)), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] == 8  # 2 epochs x 32 samples / 8
    assert r0["total_steps"] == 8
    assert r0["seen"] != r1["seen"]  # each rank trained on its own shard
    for k in r0["weights"]:
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
    for k in r0["penalty"]:
        assert torch.equal(r0["penalty"][k], r1["penalty"][k]), k
    assert not torch.equal(r0["penalty"]["scales.net__0__weight"], torch.ones(16, 8))
    w = torch.cat([r0["weights"]["0.weight"].flatten(), r0["weights"]["2.weight"].flatten()])
    assert int((w == 0).sum()) == round(0.6 * w.numel())


def test_importing_sparsehalo_imports_no_framework_and_a_missing_extra_is_one_line(monkeypatch):
    code = ("import sys, sparsehalo, sparsehalo.integrations, sparsehalo.integrations.common; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', "
            "'transformers', 'accelerate'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    monkeypatch.delitem(sys.modules, "sparsehalo.integrations.lightning")
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    with pytest.raises(ImportError) as info:
        importlib.import_module("sparsehalo.integrations.lightning")
    message = str(info.value)
    assert "\n" not in message and "pip install 'sparsehalo[lightning]'" in message


def test_the_example_trains_prunes_and_prints_the_table():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "lightning_lenet300.py"), "--epochs", "1",
                           "--train-size", "2000", "--threads", "1"], capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pruned to 0.9" in done.stdout and "266,200" in done.stdout, done.stdout
