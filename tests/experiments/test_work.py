"""Working through a plan: priority order, rebuilt plans, skipping finished or claimed runs, resuming."""

import os
import subprocess

import pytest

from sparsehalo import config, locks, paths
from sparsehalo.experiments import Item, claim, progress, release, waiting, work


class FakeTrain:
    """Stands in for training: records the run and writes its summary (unless told to fail)."""

    def __init__(self, kit, fail=()):
        self.kit, self.fail, self.calls = kit, set(fail), []

    def __call__(self, cfg, run_dir, echo):
        self.calls.append(cfg.name)
        assert locks.holder(run_dir)["pid"] == os.getpid()  # trained only while claimed
        echo(f"training {cfg.name}")
        if cfg.name in self.fail:
            raise RuntimeError(f"{cfg.name} diverged")
        self.kit.write_summary(run_dir, {0.9: 97.0}, name=cfg.name)


def item(root, name, group="g"):
    return Item(f"{name} seed 0", root, config.load(None, [f'name="{name}"']), {"name": name}, group)


def test_trains_in_priority_order_then_resumes_with_nothing(tmp_path, kit):
    items = [item(tmp_path, "a"), waiting("w: waits", "g"), item(tmp_path, "b", group=""), item(tmp_path, "c")]
    kit.write_summary(items[3].run_dir, {0.9: 90.0})  # finished before: skipped
    train, lines, after = FakeTrain(kit), [], []
    done = work(lambda: items, train=train, echo=lines.append, after=after.append)
    assert train.calls == ["a", "b"] and done == [items[0], items[2]] and after == done
    assert lines == [f"== g: a seed 0 -> {items[0].run_dir}", "training a",
                     f"== b seed 0 -> {items[2].run_dir}", "training b"]
    assert not any(paths.lock(i.run_dir).exists() for i in done)  # claims released
    assert progress(items) == (3, 3, 1)
    again = FakeTrain(kit)
    assert work(lambda: items, train=again, echo=lines.append) == [] and again.calls == []


def test_the_plan_is_rebuilt_after_every_run(tmp_path, kit):
    first, second = item(tmp_path, "sweep"), item(tmp_path, "main")
    builds = []

    def make_plan():  # "main" waits until "sweep" has finished
        builds.append(1)
        return [first, second if paths.summary(first.run_dir).exists() else waiting("main: waits")]

    train = FakeTrain(kit)
    assert work(make_plan, train=train, echo=lambda s: None) == [first, second]
    assert train.calls == ["sweep", "main"] and len(builds) == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_runs_claimed_by_a_live_worker_are_left_to_it(tmp_path, kit):
    items = [item(tmp_path, n) for n in ("a", "b", "c")]
    train = FakeTrain(kit)
    with kit.other_worker(items[0].run_dir) as pid:  # another worker is training "a"
        assert work(lambda: items, train=train, echo=lambda s: None) == items[1:]
        assert locks.holder(items[0].run_dir)["pid"] == pid
    assert train.calls == ["b", "c"] and progress(items) == (2, 3, 0)


def test_a_run_whose_worker_died_is_taken_over(tmp_path, kit):
    a = item(tmp_path, "a")
    proc = subprocess.Popen(["true"])
    proc.wait()
    paths.lock(a.run_dir).parent.mkdir(parents=True)
    paths.lock(a.run_dir).write_text(str(proc.pid))
    train = FakeTrain(kit)
    assert work(lambda: [a], train=train, echo=lambda s: None) == [a] and train.calls == ["a"]
    assert not paths.lock(a.run_dir).exists()


def test_a_failed_run_releases_its_claim_and_is_retried_next_time(tmp_path, kit):
    items = [item(tmp_path, "a"), item(tmp_path, "b")]
    after = []
    with pytest.raises(RuntimeError, match="a diverged"):
        work(lambda: items, train=FakeTrain(kit, fail={"a"}), echo=lambda s: None, after=after.append)
    assert after == [] and not paths.lock(items[0].run_dir).exists() and progress(items) == (0, 2, 0)
    assert claim(items[0].run_dir)  # free for any worker
    release(items[0].run_dir)
    train = FakeTrain(kit)
    assert work(lambda: items, train=train, echo=lambda s: None) == items and train.calls == ["a", "b"]


def test_training_that_writes_no_summary_stops_the_worker_instead_of_looping(tmp_path):
    from sparsehalo.errors import SparsehaloError

    items, calls = [item(tmp_path, "a")], []
    with pytest.raises(SparsehaloError, match="returned without writing"):
        work(lambda: items, train=lambda cfg, run_dir, echo: calls.append(cfg.name), echo=lambda s: None)
    assert calls == ["a"] and not paths.lock(items[0].run_dir).exists()
