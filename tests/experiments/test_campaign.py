"""A toy campaign's plan (configs written here, runs hand-written): order, waiting items, choices, names."""

from sparsehalo.experiments import state
from sparsehalo.experiments.campaign import Study

XI1, XI2, XI5 = {"penalty.xi": 1e-4}, {"penalty.xi": 2e-4}, {"penalty.xi": 5e-5}
# xi 1e-4 has the best mean at 0.9 / 0.95 (96.0 against 95.75); xi 2e-4 is best at 0.95 alone.
VAL = {1e-4: {0.9: 97.0, 0.95: 95.0}, 2e-4: {0.9: 96.0, 0.95: 95.5}}
FIXED = ["lenet300 gmp 0.9 seed 0", "lenet5 gmp 0.9 seed 0", "lenet300 gmp 0.9 seed 1", "lenet5 gmp 0.9 seed 1"]
DENSE = {m: [f"{m} dense seed 0", f"{m} dense seed 1"] for m in ("lenet300", "lenet5")}
LONG = Study("lenet300", "long", "0.95", ("train.epochs=5",), (XI5, XI2), "HALO trained longer")


def finish_sweep(c, kit, val, study=None):
    for t in c.sweep("lenet300", "halo", study):
        kit.write_summary(t.run_dir, val[t.point["penalty.xi"]])


def test_fresh_plan_has_the_sweep_first_and_waits_for_it(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    plan = c.plan()
    assert [i.label for i in plan] == [
        "sweep lenet300 halo {'penalty.xi': 0.0001}", "sweep lenet300 halo {'penalty.xi': 0.0002}",
        "lenet300 halo: waits for its sweep", "lenet300 halo-per-level: waits for its sweep",
        "lenet300 halo-repro: waits for its sweep", *DENSE["lenet300"],
        "lenet5 halo: waits for its sweep", *DENSE["lenet5"], *FIXED]  # lenet5 reuses lenet300's sweep
    assert [state(i) for i in plan] == ["todo"] * 2 + ["waiting"] * 3 + ["todo"] * 2 + ["waiting"] + ["todo"] * 6
    assert {i.group for i in plan} == {"toy"}
    sweep = plan[:2]
    assert [i.setting for i in sweep] == [{"model": "lenet300", "method": "halo", "point": p} for p in (XI1, XI2)]
    assert [i.config.penalty.settings["xi"] for i in sweep] == [1e-4, 2e-4]
    assert {(i.config.name, i.config.data.val_size, i.root) for i in sweep} == {
        ("sweep_lenet300_halo", 10000, c.out / "sweep")}
    gmp = plan[-4:]
    assert [(i.config.model.name, i.config.method.sparsity, i.config.train.seed) for i in gmp] == [
        ("lenet300", 0.9, 0), ("lenet5", 0.9, 0), ("lenet300", 0.9, 1), ("lenet5", 0.9, 1)]
    assert gmp[1].setting == {"model": "lenet5", "method": "gmp", "level": 0.9, "seed": 0}
    assert all(i.config.run.progress is False and i.config.data.val_size == 0 for i in plan[5:] if not i.waiting)
    assert c.chosen("lenet300", "halo") is None and c.chosen_per_level("lenet300") is None


def test_a_partial_sweep_chooses_nothing(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    kit.write_summary(c.sweep("lenet300", "halo")[1].run_dir, VAL[2e-4])
    assert c.chosen("lenet300", "halo") is None and c.chosen("lenet5", "halo") is None
    assert sum(i.waiting for i in c.plan()) == 4


def test_a_finished_sweep_turns_waiting_items_into_runs(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    finish_sweep(c, kit, VAL)
    assert c.chosen("lenet300", "halo") == XI1 and c.chosen("lenet5", "halo") == XI1
    assert c.chosen_per_level("lenet300") == {"0.9": (XI1, 97.0), "0.95": (XI2, 95.5)}
    plan = c.plan()
    assert [i.label for i in plan] == [
        "sweep lenet300 halo {'penalty.xi': 0.0001}", "sweep lenet300 halo {'penalty.xi': 0.0002}",
        "lenet300 halo seed 0", "lenet300 halo seed 1",
        "lenet300 halo-per-level t_lenet300_halo_xi0.0002 seed 0",
        "lenet300 halo-per-level t_lenet300_halo_xi0.0002 seed 1",
        "lenet300 halo-repro seed 0", *DENSE["lenet300"], "lenet5 halo seed 0", "lenet5 halo seed 1", *DENSE["lenet5"],
        *FIXED]
    assert [state(i) for i in plan] == ["done"] * 2 + ["todo"] * 15
    main, per_level, repro = plan[2], plan[4], plan[6]
    assert (main.config.name, main.config.penalty.settings, main.root) == (
        "t_lenet300_halo", {"xi": 1e-4}, c.out / "runs")
    assert main.setting == {"model": "lenet300", "method": "halo", "seed": 0}
    assert (per_level.config.name, per_level.config.penalty.settings) == ("t_lenet300_halo_xi0.0002", {"xi": 2e-4})
    assert per_level.setting == {"model": "lenet300", "method": "halo", "seed": 0, "point": XI2}
    assert repro.config == main.config and repro.root == c.out / "repro" and repro.run_dir != main.run_dir
    lenet5 = plan[9]
    assert (lenet5.config.name, lenet5.config.model.name, lenet5.config.penalty.settings) == (
        "t_lenet5_halo", "lenet5", {"xi": 1e-4})
    assert len({i.run_dir for i in plan}) == len(plan)


def test_no_per_level_runs_when_every_level_agrees_with_the_overall_choice(tmp_path, kit):
    c = kit.toy_campaign(tmp_path, repro=[])
    finish_sweep(c, kit, {1e-4: {0.9: 97.0, 0.95: 96.0}, 2e-4: {0.9: 96.0, 0.95: 95.5}})
    assert c.chosen_per_level("lenet300") == {"0.9": (XI1, 97.0), "0.95": (XI1, 96.0)}
    assert not any("per-level" in i.label or "repro" in i.label for i in c.plan())
    assert c.focus_name_at("lenet300", "0.95") == "t_lenet300_halo"


def test_focus_names(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    assert c.focus_name("lenet300") == "t_lenet300_halo"
    assert c.focus_name("lenet300", {"penalty.xi": 5e-5, "penalty.psi": 1e-4}, "long") == (
        "t_lenet300_halo_xi5e-05_psi0.0001_long")
    assert c.focus_name_at("lenet300", "0.95") == "t_lenet300_halo"  # no choice yet: the main runs
    finish_sweep(c, kit, VAL)
    assert [c.focus_name_at("lenet300", lv) for lv in ("0.9", "0.95", "0.99")] == [
        "t_lenet300_halo", "t_lenet300_halo_xi0.0002", "t_lenet300_halo"]
    assert c.focus_name_at("lenet5", "0.95") == "t_lenet5_halo"  # no sweep of its own


def test_a_study_waits_for_both_sweeps(tmp_path, kit):
    c = kit.toy_campaign(tmp_path, studies=[LONG])
    labels = [i.label for i in c.plan()]
    assert labels[-7:] == ["sweep lenet300 halo long {'penalty.xi': 5e-05}",
                           "sweep lenet300 halo long {'penalty.xi': 0.0002}",
                           "lenet300 halo-long: waits for its sweep", *FIXED]  # after the models, before the baselines
    sweep = [i for i in c.plan() if i.label.startswith("sweep lenet300 halo long")]
    assert {(i.config.name, i.config.train.epochs, i.config.data.val_size) for i in sweep} == {
        ("sweep_lenet300_halo_long", 5, 10000)}
    assert sweep[1].setting == {"model": "lenet300", "method": "halo", "point": XI2, "study": "long"}
    finish_sweep(c, kit, VAL)
    study = c.study_runs(LONG)
    assert [i.label for i in study] == ["lenet300 halo-long t_lenet300_halo_xi0.0002_long seed 0",
                                        "lenet300 halo-long t_lenet300_halo_xi0.0002_long seed 1",
                                        "lenet300 halo-long: waits for its long sweep"]
    assert (study[0].root, study[0].config.train.epochs, study[0].config.penalty.settings) == (
        c.out / "long", 5, {"xi": 2e-4})
    assert study[1].setting == {"model": "lenet300", "method": "halo", "seed": 1, "point": XI2, "study": "long"}
    finish_sweep(c, kit, {5e-5: {0.95: 96.0}, 2e-4: {0.95: 95.0}}, LONG)
    assert c.study_choice(LONG) == (XI5, 96.0)
    assert [i.config.name for i in c.study_runs(LONG)] == (
        ["t_lenet300_halo_xi0.0002_long"] * 2 + ["t_lenet300_halo_xi5e-05_long"] * 2)


def test_a_study_of_its_own_choice_only(tmp_path, kit):
    st = Study("lenet300", "long", "0.95", ("train.epochs=5",), (XI5, XI2), "HALO trained longer",
               with_short_choice=False)
    c = kit.toy_campaign(tmp_path, studies=[st])
    assert [i.label for i in c.study_runs(st)] == ["lenet300 halo-long: waits for its long sweep"]
    finish_sweep(c, kit, {5e-5: {0.95: 94.0}, 2e-4: {0.95: 95.0}}, st)
    assert [i.config.name for i in c.study_runs(st)] == ["t_lenet300_halo_xi0.0002_long"] * 2


def test_target_runs_need_no_sweep_and_follow_the_focus_runs(tmp_path, kit):
    c = kit.toy_campaign(tmp_path, target_levels=(0.9, 0.95))
    plan = c.plan()
    labels = [i.label for i in plan]
    want = [f"lenet300 halo-target {lv} seed {s}" for s in (0, 1) for lv in ("0.9", "0.95")]
    start = labels.index("lenet300 halo-repro: waits for its sweep") + 1
    assert labels[start:start + 4] == want  # right after the focus method's runs, before the next method
    items = plan[start:start + 4]
    assert all(state(i) == "todo" for i in items)  # no grid: nothing to wait for
    assert [(i.config.penalty.settings["target_sparsity"], i.config.prune.levels, i.config.train.seed) for i in items] == [
        (0.9, [0.9], 0), (0.95, [0.95], 0), (0.9, [0.9], 1), (0.95, [0.95], 1)]
    assert {i.config.name for i in items} == {c.target_name("lenet300")} == {"t_lenet300_halo_target"}
    assert len({i.run_dir for i in items}) == 4 and {i.root for i in items} == {c.out / "runs"}
    assert items[1].setting == {"model": "lenet300", "method": "halo", "target": 0.95, "seed": 0}
    assert kit.toy_campaign(tmp_path).target_runs("lenet300") == []
