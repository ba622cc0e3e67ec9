"""run.keep_checkpoints bounds what a run directory holds: 1 checkpoint by default, the k newest epochs,
or none once the summary is written."""

import os
import subprocess
from pathlib import Path

import torch

from sparsehalo import cli, io, paths
from sparsehalo import config as config_mod

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "mnist_lenet300_dense.toml")
BASE = ['data.name="synthetic"', "data.batch_size=64", "prune.levels=[0.5]", "run.progress=false",
        'run.device="cpu"', 'name="kept"']


def train(out, capsys, epochs, keep):
    settings = [*BASE, f"train.epochs={epochs}", f"run.keep_checkpoints={keep}"]
    code = cli.main(["train", CONFIG, "--out", str(out), "--quiet", *sum((["--set", s] for s in settings), [])])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return config_mod.load(CONFIG, settings).run_dir(out)


def checkpoint_bytes(run_dir):
    """Bytes of distinct checkpoint files under run_dir (hard links counted once)."""
    seen = {}
    for p in run_dir.rglob("*.pt"):
        st = p.stat()
        seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values()), len(seen)


def test_default_keeps_one_checkpoint(tmp_path, capsys):
    run = train(tmp_path, capsys, epochs=3, keep=1)
    assert paths.checkpoint(run).exists()
    assert not paths.snapshots_dir(run).exists()
    assert torch.load(paths.checkpoint(run), weights_only=True)["epoch"] == 3


def test_k_newest_epochs_are_kept_and_share_storage(tmp_path, capsys):
    run = train(tmp_path, capsys, epochs=4, keep=2)
    snaps = sorted(p.name for p in paths.snapshots_dir(run).glob("*.pt"))
    assert snaps == ["epoch-0003.pt", "epoch-0004.pt"]
    newest, ckpt = paths.snapshot(run, 4), paths.checkpoint(run)
    assert os.path.samefile(newest, ckpt)  # the newest snapshot is checkpoint.pt, not a second copy
    total, files = checkpoint_bytes(run)
    assert files == 2 and total <= 2 * ckpt.stat().st_size * 1.01
    older = torch.load(paths.snapshot(run, 3), weights_only=True)
    assert older["epoch"] == 3 and len(older["history"]) == 3
    latest = torch.load(ckpt, weights_only=True)
    assert any(not torch.equal(older["model"][k], latest["model"][k]) for k in latest["model"])
    # Each snapshot's sidecar names the snapshot itself, so `sha256sum -c` checks it.
    for name in snaps:
        side = io.sidecar(paths.snapshots_dir(run) / name).read_text()
        assert side.split("  ")[1].strip() == name
    check = subprocess.run(["sha256sum", "-c", "epoch-0003.pt.sha256", "epoch-0004.pt.sha256"],
                           cwd=paths.snapshots_dir(run), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_snapshot_is_evaluated_and_a_flipped_byte_caught(tmp_path, capsys):
    run = train(tmp_path, capsys, epochs=2, keep=3)
    snap = paths.snapshot(run, 1)
    assert cli.main(["eval", str(snap), "--device", "cpu"]) == 0
    capsys.readouterr()
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.unlink()  # break the hard link first, as a copy from elsewhere would
    snap.write_bytes(bytes(data))
    assert cli.main(["eval", str(snap), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0]


def test_lowering_k_on_resume_drops_older_snapshots(tmp_path, capsys):
    train(tmp_path, capsys, epochs=2, keep=5)
    settings = [*BASE, "train.epochs=2", "run.keep_checkpoints=5"]
    run = config_mod.load(CONFIG, settings).run_dir(tmp_path)
    assert len(list(paths.snapshots_dir(run).glob("*.pt"))) == 2
    # keep_checkpoints is not hashed: the same run, resumed with k = 1, trains on and keeps one file.
    (run / "summary.json").unlink()
    io.remove(paths.checkpoint(run))
    run2 = train(tmp_path, capsys, epochs=2, keep=1)
    assert run2 == run
    assert not paths.snapshots_dir(run).exists()


def test_zero_deletes_the_checkpoint_after_the_summary(tmp_path, capsys):
    run = train(tmp_path, capsys, epochs=1, keep=0)
    assert paths.summary(run).exists()
    assert not paths.checkpoint(run).exists() and not io.sidecar(paths.checkpoint(run)).exists()
    before = sorted(p.name for p in run.rglob("*"))
    assert cli.main(["prune", str(run), "--sparsity", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.keep_checkpoints = 0" in err[0]
    assert sorted(p.name for p in run.rglob("*")) == before
    # A finished run is not trained again for want of its checkpoint.
    assert train(tmp_path, capsys, epochs=1, keep=0) == run
    assert not paths.checkpoint(run).exists()

