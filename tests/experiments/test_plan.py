"""Plans: item states, progress, the listing, claims (live, stale, racing workers) and retiring old runs."""

import os
import subprocess
import time

import pytest

from sparsehalo import config, locks, paths
from sparsehalo.experiments import (
    Item,
    claim,
    finished,
    listing,
    progress,
    release,
    retire,
    state,
    waiting,
)


def item(tmp_path, name, label=None, group="g"):
    return Item(label or name, tmp_path / "runs", config.load(None, [f'name="{name}"']), {"name": name}, group)


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: nothing runs under this pid now
    return proc.pid


def test_states_progress_and_listing(tmp_path, kit):
    a, b = item(tmp_path, "a", "a seed 0"), item(tmp_path, "b", "b seed 0", group="")
    w = waiting("c: waits for its sweep", "g", model="m", method="halo")
    assert (w.waiting, w.run_dir, w.setting, finished(w)) == (True, None, {"model": "m", "method": "halo"}, False)
    assert a.run_dir == tmp_path / "runs" / f"a-{a.config.hash()}"
    assert [state(i) for i in (a, b, w)] == ["todo", "todo", "waiting"]
    assert progress([a, b, w]) == (0, 2, 1)
    kit.write_summary(a.run_dir, {0.9: 97.0})
    assert finished(a) and not finished(b)
    assert [state(i) for i in (a, b, w)] == ["done", "todo", "waiting"]
    assert progress(iter([a, b, w])) == (1, 2, 1)
    assert listing([a, b, w]) == ["g              done     a seed 0",
                                  "               todo     b seed 0",
                                  "g              waiting  c: waits for its sweep"]


def test_claim_then_release(tmp_path):
    run = tmp_path / "new" / "run"
    assert claim(run)  # makes the run directory
    assert locks.holder(run)["pid"] == os.getpid()
    assert not claim(run)  # held by a live process (this one)
    release(run)
    assert not paths.lock(run).exists()
    release(run)  # nothing to release: no error
    assert claim(run) and locks.holder(run)["pid"] == os.getpid()


@pytest.mark.parametrize("text", ["parent", "dead", "not a pid", ""])
def test_an_unlocked_claim_file_is_free_whatever_it_says(tmp_path, text):
    """The lock decides, not the pid in the file: a file nobody holds locked is left from a dead worker."""
    run = tmp_path / "run"
    run.mkdir()
    paths.lock(run).write_text({"parent": str(os.getppid()), "dead": str(dead_pid())}.get(text, text))
    assert claim(run)
    assert locks.holder(run)["pid"] == os.getpid()
    release(run)


def test_release_never_removes_a_claim_this_process_does_not_hold(tmp_path, kit):
    run = tmp_path / "run"
    with kit.other_worker(run):
        release(run)
        assert paths.lock(run).exists() and not claim(run)


def test_a_claim_released_between_open_and_lock_is_retaken_on_the_new_file(tmp_path, monkeypatch):
    """The race of a takeover: the file this worker opened was released (unlinked) and made anew meanwhile."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    other = os.open(paths.lock(run), os.O_CREAT | os.O_RDWR)  # another holder, by hand
    fcntl.flock(other, fcntl.LOCK_EX)
    real_open, calls = os.open, []

    def open_then_lose_the_race(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if not calls:  # the holder releases right after this worker's first open
            calls.append(path)
            os.unlink(paths.lock(run))
            os.close(other)
        return fd

    monkeypatch.setattr(locks.os, "open", open_then_lose_the_race)
    assert claim(run)  # first try: the opened inode was unlinked -> second try on a fresh file
    monkeypatch.undo()
    assert len(calls) == 1 and paths.lock(run).exists()
    assert locks.holder(run)["pid"] == os.getpid()  # (the new file may reuse the inode number)
    assert locks.held_here(run) and locks.is_held(run)
    release(run)
    assert not paths.lock(run).exists() and not locks.is_held(run)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_live_worker_keeps_its_claim_until_it_dies(tmp_path, kit):
    run = tmp_path / "run"
    with kit.other_worker(run) as pid:
        assert not claim(run) and locks.holder(run)["pid"] == pid
        release(tmp_path / "elsewhere")  # releasing another run leaves this claim alone
        assert not claim(run)
    assert claim(run) and locks.holder(run)["pid"] == os.getpid()  # its worker died: taken over


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_racing_workers_never_claim_the_same_run(tmp_path):
    runs = [tmp_path / f"run{i}" for i in range(40)]
    go_r, go_w = os.pipe()  # closed by the parent once every worker is forked: all start together
    hold_r, hold_w = os.pipe()
    workers = []
    for k in range(3):
        pid = os.fork()
        if pid == 0:  # a worker: claim what it can, report, hold its claims until the parent is done
            try:
                os.close(go_w)
                os.close(hold_w)
                os.read(go_r, 1)
                won = [r.name for r in runs if claim(r)]
                (tmp_path / f"worker{k}.tmp").write_text(" ".join(won))
                os.rename(tmp_path / f"worker{k}.tmp", tmp_path / f"worker{k}.txt")  # whole or absent
                os.read(hold_r, 1)
            finally:
                os._exit(0)
        workers.append(pid)
    os.close(go_r)
    os.close(hold_r)
    os.close(go_w)
    try:
        reports = [tmp_path / f"worker{k}.txt" for k in range(3)]
        deadline = time.monotonic() + 10
        while not all(r.exists() for r in reports) and time.monotonic() < deadline:
            time.sleep(0.01)
        won = {pid: r.read_text().split() for pid, r in zip(workers, reports)}
    finally:
        os.close(hold_w)
        for pid in workers:
            os.waitpid(pid, 0)
    names = [n for ns in won.values() for n in ns]
    assert sorted(names) == sorted(r.name for r in runs)  # every run claimed exactly once
    for pid, ns in won.items():
        assert all(locks.holder(tmp_path / n)["pid"] == pid for n in ns)


def test_retire_moves_finished_runs_the_plan_no_longer_names(tmp_path, kit):
    keep, old = item(tmp_path, "keep"), item(tmp_path, "old")
    kit.write_summary(keep.run_dir, {0.9: 97.0})
    kit.write_summary(old.run_dir, {0.9: 96.0})
    (tmp_path / "runs" / "unfinished-123").mkdir()  # no summary: left alone
    lines = []
    assert retire([keep, waiting("x")], tmp_path / "runs", tmp_path / "superseded", echo=lines.append) == []
    assert old.run_dir.is_dir() and lines == []  # the plan is not final while an item waits
    moved = retire([keep], tmp_path / "runs", tmp_path / "superseded", echo=lines.append)
    assert moved == [tmp_path / "superseded" / old.run_dir.name]
    assert paths.summary(moved[0]).is_file() and not old.run_dir.exists()
    assert keep.run_dir.is_dir() and (tmp_path / "runs" / "unfinished-123").is_dir()
    assert lines == [f"moved {old.run_dir.name} to superseded/ (no longer in the plan)"]
    assert retire([keep], tmp_path / "runs", tmp_path / "superseded", echo=lines.append) == []
