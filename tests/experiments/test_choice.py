"""Choice by validation accuracy on hand-written summaries: overall, per level, at one level; ties, gaps."""


from sparsehalo.experiments import best, best_at, best_per_level, score, val_by_level

A, B, C = {"penalty.xi": 1e-4}, {"penalty.xi": 2e-4}, {"penalty.xi": 4e-4}
LEVELS = ("0.9", "0.95")


def test_val_by_level_spells_levels_like_paths(kit):
    s = kit.summary({0.9: 97.0, 0.985: 95.5, 0.996: None})
    assert val_by_level(s) == {"0.9": 97.0, "0.985": 95.5, "0.996": None}


def test_score_is_the_mean_at_the_levels_asked(kit):
    s = kit.summary({0.9: 97.0, 0.95: 96.0, 0.99: 11.0})
    assert score(s, LEVELS) == 96.5
    assert score(s, ("0.99",)) == 11.0
    assert score(s, ("0.9", "0.95", "0.99")) == 68.0


def test_score_is_none_without_a_value_at_every_level(kit):
    assert score(kit.summary({0.9: 97.0}), LEVELS) is None
    assert score(kit.summary({0.9: 97.0, 0.95: None}), LEVELS) is None
    assert score(kit.summary({}), LEVELS) is None


def test_score_needs_each_level_not_just_as_many_values(kit):
    s = kit.summary({0.9: 97.0})
    s["points"].append({**s["points"][0], "val_accuracy": 95.0, "fine_tuned": True})
    assert score(s, LEVELS) is None


def test_best_takes_the_highest_mean(kit):
    outs = [(A, kit.summary({0.9: 97.0, 0.95: 95.0})),   # 96.0
            (B, kit.summary({0.9: 96.0, 0.95: 96.5})),   # 96.25
            (C, kit.summary({0.9: 99.0, 0.95: 90.0}))]   # 94.5, best at 0.9 alone
    assert best(outs, LEVELS) == B
    assert best(outs, ("0.9",)) == C


def test_best_breaks_ties_by_grid_order(kit):
    outs = [(A, kit.summary({0.9: 97.0, 0.95: 95.0})),
            (B, kit.summary({0.9: 95.0, 0.95: 97.0})),
            (C, kit.summary({0.9: 96.0, 0.95: 96.0}))]
    assert best(outs, LEVELS) == A
    assert best(outs[1:], LEVELS) == B
    assert best(outs[::-1], LEVELS) == C


def test_best_never_picks_a_point_without_a_score(kit):
    outs = [(A, kit.summary({0.9: 99.9})), (B, kit.summary({0.9: 90.0, 0.95: 90.0})),
            (C, kit.summary({0.9: 99.0, 0.95: None}))]
    assert best(outs, LEVELS) == B
    assert best(outs[:1] + outs[2:], LEVELS) is None
    assert best([], LEVELS) is None


def test_no_choice_while_a_trial_is_unfinished(kit):
    outs = [(A, kit.summary({0.9: 97.0, 0.95: 96.0})), (B, None)]
    assert best(outs, LEVELS) is None
    assert best_at(outs, "0.9") is None
    assert best_per_level(outs, LEVELS) is None
    outs[1] = (B, kit.summary({0.9: 10.0, 0.95: 10.0}))
    assert best(outs, LEVELS) == A and best_at(outs, "0.9") == (A, 97.0)


def test_best_at_one_level(kit):
    outs = [(A, kit.summary({0.9: 97.0, 0.95: 96.0})),
            (B, kit.summary({0.9: 97.0, 0.95: 96.5})),
            (C, kit.summary({0.9: None, 0.95: 96.5}))]
    assert best_at(outs, "0.9") == (A, 97.0)     # tie with B: the earlier point
    assert best_at(outs, "0.95") == (B, 96.5)    # tie with C: the earlier point
    assert best_at(outs, "0.99") is None         # no trial has a value there
    assert best_at(outs[2:], "0.9") is None      # only a None value


def test_best_per_level_in_level_order_without_empty_levels(kit):
    outs = [(A, kit.summary({0.9: 97.0, 0.95: 95.0})),
            (B, kit.summary({0.9: 96.0, 0.95: 96.5, 0.99: None})),
            (C, kit.summary({0.9: 95.0, 0.95: 93.0, 0.985: 90.0}))]
    per = best_per_level(outs, ("0.985", "0.95", "0.99", "0.9"))
    assert per == {"0.985": (C, 90.0), "0.95": (B, 96.5), "0.9": (A, 97.0)}
    assert list(per) == ["0.985", "0.95", "0.9"]
    assert best_per_level([], LEVELS) == {}
