"""A toy campaign worked through with fake training, its sweep table and reports, and its command-line settings."""

import argparse
from pathlib import Path

from sparsehalo import paths
from sparsehalo.experiments import progress, work
from sparsehalo.experiments.campaign import add_arguments, configure

VAL = {1e-4: {0.9: 97.0, 0.95: 95.0}, 2e-4: {0.9: 96.0, 0.95: 95.5}}


class FakeTrain:
    """Writes a summary: validation accuracy from ``VAL`` for sweep runs; test accuracy 90 + seed (+0.25 in repro/)."""

    def __init__(self, kit):
        self.kit, self.dirs = kit, []

    def __call__(self, cfg, run_dir, echo):
        self.dirs.append(run_dir)
        seed, xi = cfg.train.seed, cfg.penalty.settings.get("xi")
        val = VAL[xi] if cfg.data.val_size else {0.9: None, 0.95: None}
        acc = 90.0 + seed + (0.25 if run_dir.parent.name == "repro" else 0.0)
        self.kit.write_summary(run_dir, val, seed=seed, name=cfg.name, tests={0.9: acc, 0.95: acc - 1})


def test_a_campaign_runs_to_the_end_then_resumes_with_nothing(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    train, after = FakeTrain(kit), []
    done = work(c.plan, train=train, echo=lambda s: None, after=after.append)
    final = c.plan()
    assert [i.label for i in done] == [i.label for i in final] and after == done
    assert train.dirs == [i.run_dir for i in final]  # each run trained once, in priority order
    assert progress(final) == (17, 17, 0)
    assert not list(c.out.rglob(paths.lock(Path()).name))  # every claim released
    assert work(c.plan, train=FakeTrain(kit), echo=lambda s: None) == []
    # in the order of their directories (<name>-<hash>), not of seeds
    assert sorted(c.accuracies("runs", "t_lenet300_halo", "0.9")) == [90.0, 91.0]
    assert sorted(c.accuracies("runs", c.focus_name_at("lenet300", "0.95"), "0.95")) == [89.0, 90.0]
    assert c.accuracies("runs", "t_lenet300_halo", "0.99") == []
    (item, first, again), = c.reruns()
    assert item.label == "lenet300 halo-repro seed 0"
    assert [p["test_accuracy"] for p in first["points"]] == [90.0, 89.0]
    assert [p["test_accuracy"] for p in again["points"]] == [90.25, 89.25]


def test_reruns_wait_for_both_runs(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    for t in c.sweep("lenet300", "halo"):
        kit.write_summary(t.run_dir, VAL[t.point["penalty.xi"]])
    repro = next(i for i in c.plan() if "repro" in i.label)
    kit.write_summary(repro.run_dir, {0.9: None})
    assert c.reruns() == []
    kit.write_summary(repro.config.run_dir(c.out / "runs"), {0.9: None})
    assert [item.label for item, _, _ in c.reruns()] == ["lenet300 halo-repro seed 0"]


def test_sweep_table_and_reports_retire_a_superseded_setting(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    first, second = c.sweep("lenet300", "halo")
    kit.write_summary(second.run_dir, VAL[2e-4])
    lines = []
    assert c.write_reports(echo=lines.append) == [] and lines == []
    assert (c.out / "sweep.csv").read_bytes() == (b"model,method,xi,val_acc_90,val_acc_95,score,chosen,epochs\r\n"
                                                  b"lenet300,halo,0.0002,96.0,95.5,95.75,False,3\r\n")
    kit.write_summary(first.run_dir, VAL[1e-4])
    # A main run of an older choice (xi 2e-4): same name as the new one, another config.
    old = c.load("lenet300", "halo", "penalty.xi=0.0002", "train.seed=0").run_dir(c.out / "runs")
    kit.write_summary(old, {0.9: None}, name="t_lenet300_halo")
    assert c.write_reports(echo=lines.append) == []
    assert lines == [f"moved {old.name} to superseded/ (no longer in the plan)"]
    assert paths.summary(c.out / "superseded" / old.name).is_file() and not old.exists()
    assert not (c.out / "report.md").exists()  # nothing left in runs/
    assert (c.out / "sweep.csv").read_bytes() == (b"model,method,xi,val_acc_90,val_acc_95,score,chosen,epochs\r\n"
                                                  b"lenet300,halo,0.0001,97.0,95.0,96.0,True,3\r\n"
                                                  b"lenet300,halo,0.0002,96.0,95.5,95.75,False,3\r\n")


def test_configure_sets_paths_and_run_settings_from_the_options(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args(["--results", str(tmp_path / "res"), "--configs", str(c.configs), "--threads", "2",
                          "--data-dir", 'my "data"'])
    d = configure(c, args)
    assert d.out == (tmp_path / "res").resolve() / "toy" and d.configs == c.configs
    assert d.settings == ("run.progress=false", "run.threads=2", "run.eval_pruned_every=5",
                          'run.data_dir="my \\"data\\""')
    assert c.out == tmp_path / "out" and c.settings == ("run.progress=false",)  # c itself unchanged
    run = d.load("lenet300", "halo").run
    assert (run.threads, run.eval_pruned_every, run.data_dir, run.progress) == (2, 5, 'my "data"', False)
    assert d.load("lenet300", "halo").hash() == c.load("lenet300", "halo").hash()  # run settings are not hashed


def test_campaign_options_default_to_the_environment(monkeypatch, kit, tmp_path):
    monkeypatch.setenv("SPARSEHALO_CAMPAIGN_THREADS", "3")
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args([])
    assert (args.results, args.configs, args.readme, args.data_dir, args.threads) == (
        Path("results"), Path("configs"), Path("README.md"), None, 3)
    assert configure(kit.toy_campaign(tmp_path), args).settings == (
        "run.progress=false", "run.threads=3", "run.eval_pruned_every=5")
