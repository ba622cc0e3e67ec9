"""Sweeps: the grid of settings, their ``--set`` overrides and run names, trials and the sweep table."""

import pytest

from sparsehalo import config
from sparsehalo.errors import ConfigError
from sparsehalo.experiments import (
    grid,
    outcomes,
    overrides,
    setting_name,
    short_key,
    table,
    trials,
    write_table,
)


def make_config(point):
    return config.load(None, ['name="sw"', 'penalty.name="halo"', *overrides(point)])


def test_grid_is_every_combination_last_axis_fastest():
    assert grid({"penalty.xi": [1, 2], "penalty.psi": [3, 4, 5]}) == [
        {"penalty.xi": 1, "penalty.psi": 3}, {"penalty.xi": 1, "penalty.psi": 4}, {"penalty.xi": 1, "penalty.psi": 5},
        {"penalty.xi": 2, "penalty.psi": 3}, {"penalty.xi": 2, "penalty.psi": 4}, {"penalty.xi": 2, "penalty.psi": 5},
    ]
    assert grid({"penalty.xi": [5e-6]}) == [{"penalty.xi": 5e-6}]


def test_overrides_spell_values_that_the_config_reads_back():
    point = {"penalty.xi": 5e-05, "penalty.psi": 0.0001, "prune.levels": [0.5, 0.9], "train.epochs": 7}
    sets = overrides(point)
    assert sets == ["penalty.xi=5e-05", "penalty.psi=0.0001", "prune.levels=[0.5, 0.9]", "train.epochs=7"]
    cfg = config.load(None, ['penalty.name="halo"', *sets, *overrides({"model.name": "lenet5"})])
    assert cfg.penalty.settings == {"xi": 5e-05, "psi": 0.0001}
    assert (cfg.model.name, cfg.prune.levels, cfg.train.epochs) == ("lenet5", [0.5, 0.9], 7)


def test_overrides_of_booleans_strings_and_lists_load():
    point = {"penalty.biases": True, "schedule.name": "step", "prune.levels": [0.9, 0.99], "prune.types": ["Linear"]}
    assert overrides(point) == ["penalty.biases=true", 'schedule.name="step"', "prune.levels=[0.9, 0.99]",
                                'prune.types=["Linear"]']
    cfg = config.load(None, overrides(point))
    assert (cfg.penalty.biases, cfg.schedule.name, cfg.prune.levels, cfg.prune.types) == (True, "step", [0.9, 0.99], ["Linear"])


def test_an_empty_grid_is_an_error():
    for axes in ({}, {"penalty.xi": []}, {"penalty.xi": [1e-4], "penalty.psi": []}):
        with pytest.raises(ConfigError, match="is empty"):
            grid(axes)


def test_short_key_and_setting_name():
    assert short_key("penalty.xi") == "xi" and short_key("epochs") == "epochs"
    assert short_key("method.options.start_epoch") == "start_epoch"
    point = {"penalty.xi": 5e-05, "penalty.psi": 0.0001}
    assert setting_name("mnist_lenet300_halo", point) == "mnist_lenet300_halo_xi5e-05_psi0.0001"
    assert setting_name("p", {"train.epochs": 100, "optim.lr": 2.0}) == "p_epochs100_lr2"


def test_bad_points_fail_with_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        trials(grid({"train.epoch": [3]}), make_config, tmp_path)
    with pytest.raises(ConfigError, match="empty key"):
        trials([{"train..epochs": 3}], make_config, tmp_path)
    with pytest.raises(ConfigError, match="train.epochs.*integer"):
        trials(grid({"train.epochs": ["many"]}), make_config, tmp_path)


def test_trials_name_their_runs_and_read_summaries(tmp_path, kit):
    points = grid({"penalty.xi": [1e-4, 2e-4]})
    sweep = trials(points, make_config, tmp_path / "sweep")
    assert [t.point for t in sweep] == points
    assert [t.config.penalty.settings for t in sweep] == [{"xi": 1e-4}, {"xi": 2e-4}]
    assert [t.run_dir for t in sweep] == [tmp_path / "sweep" / f"sw-{t.config.hash()}" for t in sweep]
    assert sweep[0].run_dir != sweep[1].run_dir
    points[0]["penalty.xi"] = 9.0  # a trial keeps its own copy of the point
    assert sweep[0].point == {"penalty.xi": 1e-4}
    assert outcomes(sweep) == [({"penalty.xi": 1e-4}, None), ({"penalty.xi": 2e-4}, None)]
    kit.write_summary(sweep[1].run_dir, {0.9: 97.5})
    (_, first), (point, second) = outcomes(sweep)
    assert first is None and point == {"penalty.xi": 2e-4}
    assert second["points"][0]["val_accuracy"] == 97.5 and second["run_dir"] == str(sweep[1].run_dir)


def sweep_of_three(tmp_path, kit):
    """xi 1e-4 finished, 2e-4 finished without a value at 0.95, 4e-4 unfinished."""
    sweep = trials(grid({"penalty.xi": [1e-4, 2e-4, 4e-4]}), make_config, tmp_path)
    kit.write_summary(sweep[0].run_dir, {0.9: 97.0, 0.95: 96.0, 0.99: 80.0}, epochs=30)
    kit.write_summary(sweep[1].run_dir, {0.9: 98.0, 0.95: None}, epochs=29)
    return sweep


def test_table_has_one_row_per_finished_trial(tmp_path, kit):
    rows = table(sweep_of_three(tmp_path, kit), ("0.9", "0.95"), {"penalty.xi": 1e-4}, model="m", method="halo")
    assert rows == [
        {"model": "m", "method": "halo", "xi": 1e-4, "val_acc_90": 97.0, "val_acc_95": 96.0, "score": 96.5,
         "chosen": True, "epochs": 30},
        {"model": "m", "method": "halo", "xi": 2e-4, "val_acc_90": 98.0, "val_acc_95": None, "score": None,
         "chosen": False, "epochs": 29},
    ]
    assert [r["chosen"] for r in table(sweep_of_three(tmp_path, kit), ("0.9",), None)] == [False, False]
    assert list(table(sweep_of_three(tmp_path, kit), ("0.985", "0.996"), None)[0])[1:3] == ["val_acc_98.5",
                                                                                             "val_acc_99.6"]


def test_write_table_orders_columns_and_leaves_missing_cells_empty(tmp_path):
    rows = [{"model": "m", "method": "l1", "xi": 1e-05, "val_acc_90": 97.0, "score": 97.0, "chosen": True, "epochs": 3},
            {"model": "m", "method": "halo", "xi": 5e-05, "psi": 0.0001, "val_acc_90": 96.5, "score": 96.5,
             "chosen": False, "epochs": 3}]
    path = tmp_path / "sweep.csv"
    write_table(path, rows)
    assert path.read_bytes() == (b"model,method,xi,psi,val_acc_90,score,chosen,epochs\r\n"
                                 b"m,l1,1e-05,,97.0,97.0,True,3\r\n"
                                 b"m,halo,5e-05,0.0001,96.5,96.5,False,3\r\n")
