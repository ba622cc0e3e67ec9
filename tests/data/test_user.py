"""A user's own datasets by import path: the result forms, stacking against streaming, errors."""

import sys
import textwrap

import pytest
import torch

from sparsehalo.data import ArrayDataset, load_dataset, user
from sparsehalo.errors import ConfigError, DataError

SOURCE = textwrap.dedent("""
    import torch
    from torch.utils.data import Dataset

    class Pairs(Dataset):
        def __init__(self, n, seed=0, dim=5):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, dim, generator=g)
            self.y = (self.x[:, 0] > 0).long() + 2 * (self.x[:, 1] > 0).long()
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return self.x[i], int(self.y[i])

    class Noisy(Pairs):
        def __getitem__(self, i):
            return self.x[i] + torch.randn(self.x.shape[1]), int(self.y[i])

    class Tokens(Dataset):
        def __len__(self):
            return 12
        def __getitem__(self, i):
            return torch.arange(i, i + 4), i % 3

    class FloatLabels(Pairs):
        def __getitem__(self, i):
            return self.x[i], 0.5

    SEEN = {}

    def splits(n_train=40, n_test=20, data_dir=None):
        SEEN["data_dir"] = data_dir
        return {"train": Pairs(n_train, 0), "test": Pairs(n_test, 1)}

    def pair():
        return Pairs(30, 0), Pairs(20, 1)

    def triple():
        return Pairs(30, 0), Pairs(10, 2), Pairs(20, 1)

    def declared():
        return {"train": Pairs(30, 0), "test": Pairs(20, 1), "num_classes": 6}

    def with_classes():
        train = Pairs(30, 0)
        train.classes = ["a", "b", "c", "d", "e"]
        return train, Pairs(20, 1)

    def noisy():
        return Noisy(16, 0), Noisy(8, 1)

    def tokens():
        return Tokens(), Tokens()

    def float_labels():
        return FloatLabels(10, 0), FloatLabels(10, 1)

    def number():
        return 5

    def extra_key():
        return {"train": Pairs(4), "test": Pairs(4), "labels": 3}

    def generator_split():
        return (x for x in range(3)), Pairs(4)

    def empty():
        return Pairs(0), Pairs(4)

    def not_pairs():
        return [1, 2, 3], Pairs(4)
""")


@pytest.fixture
def userdata(tmp_path, monkeypatch):
    (tmp_path / "userdata.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    yield "userdata"
    sys.modules.pop("userdata", None)


def load(name, **kw):
    return user.load_user_dataset(f"userdata:{name}", kw.pop("kwargs", {}), **kw)


def test_stacked_splits_hold_the_items_as_they_are(userdata):
    splits, stacked = load("splits", kwargs={"n_train": 33}, in_memory="yes")
    mod = sys.modules["userdata"]
    ref = mod.Pairs(33, 0)
    assert stacked and isinstance(splits.train, ArrayDataset) and splits.train.raw
    assert torch.equal(splits.train.images, ref.x) and torch.equal(splits.train.labels, ref.y)
    assert splits.val is None and len(splits.test) == 20
    assert splits.num_classes == 1 + int(max(ref.y.max(), mod.Pairs(20, 1).y.max()))
    assert splits.train.example_shape == (5,)
    x, y = next(splits.test.batches(8))
    assert torch.equal(x, mod.Pairs(20, 1).x[:8])  # no scaling, no normalization


def test_stream_and_stacked_give_the_same_batches(userdata):
    stacked, _ = load("splits", in_memory="yes")
    stream, was = load("splits", in_memory="no")
    assert not was and isinstance(stream.train, user.StreamDataset)
    assert stream.train.num_batches(7) == stacked.train.num_batches(7) == 6
    for epoch in (0, 3):
        a = list(stacked.train.batches(7, shuffle=True, seed=2, epoch=epoch))
        b = list(stream.train.batches(7, shuffle=True, seed=2, epoch=epoch))
        assert len(a) == len(b) == 6 and len(a[-1][1]) == 40 - 35
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and yb.dtype == torch.long
    orders = [torch.cat([y for _, y in stream.train.batches(40, shuffle=True, seed=2, epoch=e)]) for e in (0, 1)]
    assert not torch.equal(orders[0], orders[1])  # each epoch its own order


def test_forms_of_the_result_and_the_number_of_classes(userdata):
    pair, _ = load("pair", in_memory="yes")
    assert pair.val is None and len(pair.train) == 30
    triple, _ = load("triple", in_memory="yes")
    assert len(triple.val) == 10 and len(triple.test) == 20
    assert load("declared", in_memory="yes")[0].num_classes == 6
    assert load("with_classes", in_memory="no")[0].num_classes == 5
    streamed = load("pair", in_memory="no")[0]  # nothing says: every label is read once
    assert streamed.num_classes == 1 + int(max(d.dataset.y.max() for d in (streamed.train, streamed.test)))


def test_auto_stacks_what_fits_in_a_quarter_of_memory(userdata, monkeypatch):
    need = (40 + 20) * 5 * 4  # bytes of the float32 inputs
    monkeypatch.setattr(user, "_memory_bytes", lambda: 4 * need)
    assert load("splits")[1] is True
    monkeypatch.setattr(user, "_memory_bytes", lambda: 4 * need - 4)
    assert load("splits")[1] is False


def test_random_per_item_transforms_are_drawn_once_stacked_and_each_epoch_streamed(userdata):
    stacked, _ = load("noisy", in_memory="yes")
    stream, _ = load("noisy", in_memory="no")
    epochs = [[x for x, _ in d.train.batches(16, shuffle=True, seed=0, epoch=0)][0] for d in (stacked, stacked, stream, stream)]
    assert torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[2], epochs[3])


def test_integer_inputs_keep_their_dtype(userdata):
    splits, _ = load("tokens", in_memory="yes")
    x, y = next(splits.train.batches(5))
    assert x.dtype == torch.int64 and torch.equal(x[2], torch.arange(2, 6)) and y.tolist() == [0, 1, 2, 0, 1]


def test_data_dir_is_offered_to_a_factory_that_takes_it(userdata, tmp_path):
    load("splits", data_dir=tmp_path / "d", in_memory="yes")
    assert sys.modules["userdata"].SEEN["data_dir"] == str(tmp_path / "d")


@pytest.mark.parametrize("name,message", [
    ("number", "returned int"),
    ("extra_key", "keys \\['labels', 'test', 'train'\\]"),
    ("generator_split", "the train split is a generator, not a map-style dataset"),
    ("empty", "the train split is empty"),
    ("not_pairs", "train items must be \\(input, label\\), got int"),
    ("float_labels", "train labels must be one integer per item"),
])
def test_bad_results_are_one_line_data_errors(userdata, name, message):
    with pytest.raises(DataError, match=message):
        load(name, in_memory="yes")


def test_load_dataset_with_a_user_factory(userdata):
    splits = load_dataset("userdata:splits", val_size=10, seed=1, in_memory="yes")
    assert len(splits.train) == 30 and len(splits.val) == 10
    assert not set(splits.val.images[:, 0].tolist()) & set(splits.train.images[:, 0].tolist())
    with pytest.raises(DataError, match="returns its own validation split"):
        load_dataset("userdata:triple", val_size=5)
    with pytest.raises(DataError, match="augment applies to the bundled datasets"):
        load_dataset("userdata:pair", augment=True)
    with pytest.raises(DataError, match="data.in_memory must be one of"):
        load_dataset("userdata:pair", in_memory="maybe")
    with pytest.raises(DataError, match="data.kwargs applies to a user's dataset factory"):
        load_dataset("synthetic", kwargs={"n": 1})
    with pytest.raises(ConfigError, match="unexpected keyword argument 'n'"):
        load_dataset("userdata:pair", kwargs={"n": 1})
