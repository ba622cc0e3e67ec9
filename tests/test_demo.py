"""Tests for sparsehalo.demo: the table, and the kernel build overlapping the run that does not need it."""

from __future__ import annotations

import threading

from sparsehalo import demo


def test_demo_trains_the_run_without_penalty_while_the_kernel_builds(monkeypatch, tmp_path):
    events = []
    started, release = threading.Event(), threading.Event()

    def fake_build():
        started.set()
        release.wait(5)
        events.append("built")

    def build_meanwhile():
        thread = threading.Thread(target=fake_build)
        thread.start()
        return thread

    real_train = demo.train

    def train(cfg, run_dir, echo):
        events.append(cfg.name)
        if cfg.name == "mnist_lenet300_dense":
            assert started.wait(5)  # the build runs while the first run trains
            release.set()
        return real_train(cfg, run_dir, echo=echo)

    monkeypatch.setattr(demo, "build_kernel_meanwhile", build_meanwhile)
    monkeypatch.setattr(demo, "train", train)
    table = demo.run_demo(tmp_path, epochs=1, extra=["data.train_size=200", "run.progress=false", "run.threads=1"],
                          echo=lambda s: None)
    assert events == ["mnist_lenet300_dense", "built", "mnist_lenet300_halo", "mnist_lenet300_halo_target"]
    header = next(line for line in table.splitlines() if line.startswith("| sparsity"))
    assert header == "| sparsity | HALO | HALO, target 99% | no penalty |"  # the table keeps its column order
    assert (tmp_path / "results.md").read_text() == table + "\n"


def test_readme_quotes_the_committed_demo_timing():
    # the README's demo numbers are scripts/time_demo.sh's output (results/demo/timing.md), never typed by hand
    from support import ROOT

    timing = (ROOT / "results" / "demo" / "timing.md").read_text()
    blocks = [b.split("```")[0] for b in timing.split("```text\n")[1:]]
    assert len(blocks) == 2 and "total" in blocks[0] and "| sparsity |" in blocks[1]
    readme = (ROOT / "README.md").read_text()
    for block in blocks:
        assert "```text\n" + block + "```" in readme
