"""`--list-commands`: one idempotent `sparsehalo train ...` per unfinished run, for any scheduler."""

import shlex

import pytest

from sparsehalo import config, paths
from sparsehalo.cli import build_parser, main
from sparsehalo.errors import SparsehaloError
from sparsehalo.experiments import Item, command, pending_commands


def parsed(line):
    words = shlex.split(line)
    assert words[:2] == ["sparsehalo", "train"]
    return build_parser().parse_args(words[1:])


def test_every_unfinished_run_gets_a_command_that_rebuilds_its_run_directory(tmp_path, kit):
    c = kit.toy_campaign(tmp_path)
    plan = c.plan()
    lines, waiting = pending_commands(plan)
    todo = [i for i in plan if not i.waiting]
    assert len(lines) == len(todo) > 0 and waiting == sum(i.waiting for i in plan) > 0
    for line, item in zip(lines, todo):
        args = parsed(line)  # the real command line parser, then the real config loader
        assert config.load(args.config, args.set).run_dir(args.out) == item.run_dir
        assert args.quiet


def test_a_finished_run_drops_out_and_its_command_is_idempotent(tmp_path, capsys, kit):
    c = kit.toy_campaign(tmp_path)
    lines, _ = pending_commands(c.plan())
    first = [line for line in lines if "t_lenet300_dense" in line][0]
    words = shlex.split(first)[1:]
    args = build_parser().parse_args(words)
    run_dir = config.load(args.config, args.set).run_dir(args.out)
    assert main(words) == 0  # trained through the same CLI a scheduler calls
    assert paths.summary(run_dir).exists()
    after, _ = pending_commands(c.plan())
    assert first not in after and len(after) == len(lines) - 1
    before = sorted(p.name for p in run_dir.iterdir())
    assert main(words) == 0  # a second start skips the finished run and changes nothing
    assert sorted(p.name for p in run_dir.iterdir()) == before
    capsys.readouterr()


def test_a_run_in_use_refuses_a_second_start(tmp_path, capsys, kit):
    c = kit.toy_campaign(tmp_path)
    item = next(i for i in c.plan() if not i.waiting)
    words = shlex.split(command(item))[1:]
    with kit.other_worker(item.run_dir):
        assert main(words) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by pid" in err[0]
    assert not paths.summary(item.run_dir).exists()


def test_an_item_without_an_origin_is_refused(tmp_path):
    cfg = config.load(None, ['data.name="synthetic"'])
    with pytest.raises(SparsehaloError, match="no config file and overrides"):
        command(Item("bare", tmp_path, cfg))
