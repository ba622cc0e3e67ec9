"""One writer per run directory: a second process is refused, a dead one's lock taken over, temp files cleaned."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sparsehalo import cli, locks, paths
from sparsehalo import config as config_mod

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX locks and fork")

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "mnist_lenet300_dense.toml")
SETTINGS = ['data.name="synthetic"', "data.batch_size=64", "train.epochs=1",
            "prune.levels=[0.5]", "run.progress=false", 'run.device="cpu"', 'name="locked"']


def cli_train(out, capsys):
    code = cli.main(["train", CONFIG, "--out", str(out), "--quiet",
                     *sum((["--set", s] for s in SETTINGS), [])])
    return code, capsys.readouterr()


def run_dir(out):
    return config_mod.load(CONFIG, SETTINGS).run_dir(out)


def test_a_second_process_on_a_run_is_refused_in_one_line(tmp_path, capsys):
    target = run_dir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from sparsehalo import locks; ok, _ = locks.acquire(sys.argv[1]); "
        "print('held' if ok else 'no', flush=True); sys.stdin.read()"), str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in target.iterdir())
        code, out = cli_train(tmp_path, capsys)
        err = out.err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert f"in use by pid {holder.pid} on {socket.gethostname()}" in err[0]
        assert sorted(p.name for p in target.iterdir()) == before  # nothing written by the refused process
        assert locks.is_held(target) and locks.holder(target)["pid"] == holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not locks.is_held(target)


def test_a_dead_process_lock_and_temp_files_are_taken_over(tmp_path, capsys):
    target = run_dir(tmp_path)
    target.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    paths.lock(target).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": 0}))
    stale = [target / ".checkpoint.pt.abc123.tmp", target / ".summary.json.sha256.x.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    code = cli.main(["train", CONFIG, "--out", str(tmp_path),
                     *sum((["--set", s] for s in SETTINGS), [])])
    err = capsys.readouterr().err
    assert code == 0
    assert f"took over the lock left by pid {int(dead.stdout)}" in err
    assert all(not p.exists() for p in stale) and "removed .checkpoint.pt.abc123.tmp" in err
    assert paths.summary(target).is_file() and not paths.lock(target).exists()  # released at the end


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_outermost(tmp_path):
    d = tmp_path / "r"
    with locks.locked(d):
        with locks.locked(d):
            assert locks.held_here(d)
        assert locks.held_here(d) and paths.lock(d).exists()
    assert not locks.held_here(d) and not paths.lock(d).exists()


def test_a_run_whose_dataset_is_missing_leaves_no_directory(tmp_path, capsys):
    code = cli.main(["train", CONFIG, "--out", str(tmp_path / "runs"), "--quiet", "--data-dir", str(tmp_path / "nothing"),
                     *sum((["--set", s] for s in SETTINGS if "synthetic" not in s), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
