"""Data-parallel training: 2 CPU processes on gloo over 127.0.0.1 give the single-process run.

The tolerance: final weights and scales within 1e-6 absolute of one process (measured: about 1.5e-8
after 2 epochs; the two differ only by float rounding, the mean of two half-batch means against one
full-batch mean).  Masks: the same number kept; a weight whose magnitude ties its neighbour's to 1e-8
may flip, so at most 0.01% of entries differ (measured: none).  Every rank holds the same values after
every epoch (checked by the loop itself, see test_ranks_that_differ_are_caught).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import paths
from sparsehalo.data import make_synthetic
from sparsehalo.data.arrays import shard_range
from sparsehalo.data.augment import random_crop_flip
from sparsehalo.data.user import StreamDataset
from sparsehalo.errors import ConfigError
from sparsehalo.training import train
from sparsehalo.training.distributed import World, check_batches

from support import ROOT, cli

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not hasattr(os, "fork"),
                                reason="needs torch.distributed (gloo) and POSIX processes")

BASE = ['data.name="synthetic"', "data.batch_size=64", "train.epochs=2", "prune.levels=[0.5]",
        "run.progress=false", 'run.device="cpu"', "run.threads=1"]
METHODS = {  # config, extra overrides
    "halo": ("mnist_lenet300_halo", []),
    "gmp": ("mnist_lenet300_gmp", ["method.options={start_epoch=0.5,end_epoch=1.5,frequency=5}"]),
    "imp": ("mnist_lenet300_imp", ["method.options={rounds=1,rewind_step=0}"]),
    "snip": ("mnist_lenet300_snip", []),
    "random": ("mnist_lenet300_random", []),
    "finetune": ("mnist_lenet300_finetune", ["method.options={finetune_epochs=1}"]),
}


def settings(method):
    name, extra = METHODS[method]
    return str(ROOT / "configs" / f"{name}.toml"), [*BASE, *extra]


def sets(overrides):
    return sum((["--set", s] for s in overrides), [])


def env1():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))


def train_cmd(method, out, launcher):
    config, overrides = settings(method)
    args = ["train", config, "--out", str(out), "--quiet", *sets(overrides)]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sparsehalo", *args]
    return [sys.executable, "-m", "sparsehalo", *args, "--nproc", "2"]


def single(method, out):
    config, overrides = settings(method)
    cfg = config_mod.load(config, overrides)
    train(cfg, cfg.run_dir(out), echo=lambda s: None)
    return cfg.run_dir(out)


def files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*") if p.name != "run.lock")


def load(run_dir):
    return torch.load(paths.checkpoint(run_dir), weights_only=True)


_TWO: dict[str, Path] = {}


def two_process_run(method, out):
    """The 2-process run of ``method`` (torchrun for HALO, --nproc for the others), trained once per session."""
    if method not in _TWO:
        launcher = "torchrun" if method == "halo" else "--nproc"
        proc = subprocess.run(train_cmd(method, out, launcher), capture_output=True, text=True, env=env1(), timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        _TWO[method] = Path(proc.stdout.strip().splitlines()[-1])
    return _TWO[method]


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_give_the_single_process_run(method, tmp_path_factory):
    one = single(method, tmp_path_factory.mktemp("one"))
    two = two_process_run(method, tmp_path_factory.mktemp("two"))
    assert two.name == one.name  # the same config hash: the same run directory name
    assert files(two) == files(one)  # rank 1 wrote nothing of its own
    a, b = load(one), load(two)
    for part in ("model", "penalty"):
        assert a[part].keys() == b[part].keys()
        for k, v in a[part].items():
            if v.is_floating_point():
                assert torch.allclose(v, b[part][k], rtol=0, atol=1e-6), (part, k, (v - b[part][k]).abs().max().item())
            else:
                assert torch.equal(v, b[part][k]), (part, k)
    if a["mask"] is not None:
        ma, mb = a["mask"], b["mask"]
        for k in ma:
            assert int(ma[k].sum()) == int(mb[k].sum()), k
            assert (ma[k] != mb[k]).float().mean().item() <= 1e-4, k
    assert len(b["history"]) == 2 and b["epoch"] == 2
    sa = json.loads(paths.summary(one).read_text())
    sb = json.loads(paths.summary(two).read_text())
    assert abs(sa["test_accuracy"] - sb["test_accuracy"]) <= 1.0  # a prediction or two may flip


def test_a_killed_two_process_run_resumes_bit_identically(tmp_path, tmp_path_factory):
    ref_dir = two_process_run("halo", tmp_path_factory.mktemp("two"))
    config, overrides = settings("halo")
    run_dir = config_mod.load(config, overrides).run_dir(tmp_path / "killed")
    proc = subprocess.Popen(train_cmd("halo", tmp_path / "killed", "--nproc"), env=env1(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (paths.metrics(run_dir).exists() and len(paths.metrics(run_dir).read_text().splitlines()) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch was saved"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        proc.wait()
    assert not paths.summary(run_dir).exists()
    again = subprocess.run(train_cmd("halo", tmp_path / "killed", "--nproc"), capture_output=True, text=True, env=env1(), timeout=240)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = load(ref_dir), load(run_dir)
    for part in ("model", "penalty"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    assert [r["epoch"] for r in b["history"]] == [1, 2]


def test_a_run_in_use_is_refused_by_both_ranks_in_one_line(tmp_path):
    config, overrides = settings("halo")
    target = config_mod.load(config, overrides).run_dir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from sparsehalo import locks; ok, _ = locks.acquire(sys.argv[1]); "
        "print('held' if ok else 'no', flush=True); sys.stdin.read()"), str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env1())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = files(target)
        proc = subprocess.run(train_cmd("halo", tmp_path, "--nproc"), capture_output=True, text=True, env=env1(), timeout=120)
        err = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line]
        assert proc.returncode == 2, proc.stderr
        assert len(err) == 1 and f"in use by pid {holder.pid} on {socket.gethostname()}" in err[0], proc.stderr
        assert files(target) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


WORKER = """
import sys, torch
from sparsehalo.training.distributed import from_env, init, check_same
from sparsehalo.errors import SparsehaloError
world = from_env()
init(world, torch.device("cpu"))
t = torch.arange(10.0)
if world.rank == 1 and sys.argv[1] == "differ":
    t[3] = 3.0000002
try:
    check_same([t, torch.ones(2, dtype=torch.bool)], world, "after epoch 1")
    print("same")
except SparsehaloError as exc:
    print("caught:", exc)
"""


@pytest.mark.parametrize("case", ["same", "differ"])
def test_ranks_that_differ_are_caught(case, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--tee", "1", str(script), case], capture_output=True, text=True, env=env1(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("]:", 1)[-1].strip() for line in proc.stdout.splitlines() if line.strip()]
    if case == "same":
        assert lines.count("same") == 2, proc.stdout
    else:
        caught = [line for line in lines if line.startswith("caught:")]
        assert len(caught) == 2 and "rank(s) [1]" in caught[0], proc.stdout


# -- the pieces, in this process ---------------------------------------------------------------------
@pytest.mark.parametrize("n,size", [(64, 2), (63, 2), (7, 3), (5, 5), (1000, 7)])
def test_shards_partition_a_batch(n, size):
    ranges = [shard_range(n, r, size) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    assert lengths == [len(c) for c in torch.arange(n).tensor_split(size)]


@pytest.mark.parametrize("augment", [False, True])
def test_the_ranks_parts_make_the_single_process_batch(augment):
    train_set = make_synthetic(num_train=150, num_test=10).train
    if augment:
        train_set = train_set.with_augment(random_crop_flip)
    kwargs = dict(shuffle=True, seed=3, epoch=2)
    full = list(train_set.batches(64, **kwargs))
    parts = [list(train_set.batches(64, shard=(r, 3), **kwargs)) for r in range(3)]
    assert all(len(p) == len(full) == 3 for p in parts)
    for b, (x, y) in enumerate(full):
        assert torch.equal(torch.cat([p[b][0] for p in parts]), x)
        assert torch.equal(torch.cat([p[b][1] for p in parts]), y)


def test_a_streamed_dataset_is_sharded_alike():
    data = make_synthetic(num_train=70, num_test=10).train
    items = [(data.images[i].float(), int(data.labels[i])) for i in range(len(data))]
    stream = StreamDataset(items, torch.device("cpu"), 0)
    full = list(stream.batches(32, shuffle=True, seed=1, epoch=0))
    parts = [list(stream.batches(32, shuffle=True, seed=1, epoch=0, shard=(r, 2))) for r in range(2)]
    for b, (_, y) in enumerate(full):
        assert torch.equal(torch.cat([p[b][1] for p in parts]), y)


def test_a_batch_smaller_than_the_processes_is_refused():
    check_batches(130, 64, World(0, 2, 0))  # batches of 64, 64 and 2: fine
    with pytest.raises(ConfigError, match="a batch of 1, fewer than the 2 processes"):
        check_batches(129, 64, World(0, 2, 0))
    with pytest.raises(ConfigError, match="a batch of 4, fewer than the 8 processes"):
        check_batches(1000, 4, World(0, 8, 0))


@pytest.mark.parametrize("extra,needle", [(["--nproc", "0"], "--nproc must be in 1..1024"),
                                          (["--nproc", "2", "--set", "train.epochs=0"], "'train.epochs' must be in"),
                                          (["--nproc", "2", "gmp"], "GMP prunes from start_epoch to end_epoch")])
def test_bad_nproc_input_is_one_line_before_any_process_starts(extra, needle, tmp_path, capsys):
    config, overrides = settings("halo")
    if extra[-1] == "gmp":  # a pruning window the epochs cannot hold: refused before the data is read
        config, extra = str(ROOT / "configs" / "mnist_lenet300_gmp.toml"), extra[:-1]
    rc, _, err = cli(capsys, "train", config, "--out", tmp_path, *sets(overrides), *extra)
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []
