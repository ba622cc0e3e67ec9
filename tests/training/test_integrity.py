"""Every file a run reads back carries a SHA-256: one changed byte anywhere is caught, in one line."""

import hashlib
import json

import pytest

from sparsehalo import cli, paths
from sparsehalo.errors import IntegrityError
from sparsehalo.io import atomic_write_bytes, load_torch, read_json, sidecar, verify, write_json


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from sparsehalo import config as config_mod
    from sparsehalo import training

    settings = ['data.name="synthetic"', "data.batch_size=64", "train.epochs=1", 'penalty.name="halo"',
                "penalty.xi=1e-3", "penalty.psi=1e-3", "prune.levels=[0.5]", "run.progress=false", 'run.device="cpu"']
    cfg = config_mod.load(None, settings)
    out = tmp_path_factory.mktemp("runs")
    training.train(cfg, cfg.run_dir(out), echo=lambda s: None)
    return cfg.run_dir(out)


def offsets(size, n=60):
    """``n`` offsets spread over a file of ``size`` bytes, both ends included."""
    return sorted({0, 1, size - 1, *(round(k * (size - 1) / (n - 1)) for k in range(n))})


def flipped(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    return bytes(data)


def test_sidecars_are_sha256sum_lines_of_the_run_files(run):
    for f in (paths.checkpoint(run), paths.config(run), paths.summary(run)):
        assert sidecar(f).read_text() == f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
        verify(f)  # no error


@pytest.mark.parametrize("which", ["checkpoint", "config", "summary"])
def test_one_flipped_byte_anywhere_is_caught(run, tmp_path, which):
    original = getattr(paths, which)(run)
    copy = tmp_path / original.name
    sidecar(copy).write_bytes(sidecar(original).read_bytes())
    read = (lambda p: load_torch(p)) if which == "checkpoint" else (lambda p: read_json(p))
    for at in offsets(original.stat().st_size):
        copy.write_bytes(flipped(original, at))
        with pytest.raises(IntegrityError, match=f"{copy.name}.*is corrupt.*SHA-256"):
            read(copy)
    copy.write_bytes(original.read_bytes())
    read(copy)  # the intact copy reads


def test_a_damaged_sidecar_is_named(tmp_path):
    f = tmp_path / "s.json"
    write_json(f, {"a": 1}, checksum=True)
    sidecar(f).write_text("not a hash\n")
    with pytest.raises(IntegrityError, match="s.json.sha256.*damaged"):
        read_json(f)
    sidecar(f).unlink()
    assert read_json(f) == {"a": 1}  # without a sidecar (older files, other writers): read unchecked


def test_the_sidecar_lists_both_hashes_while_the_file_is_replaced(tmp_path, monkeypatch):
    """A crash between the sidecar and the rename must leave a pair that verifies, old file or new."""
    f = tmp_path / "c.json"
    write_json(f, {"v": 1}, checksum=True)
    old = hashlib.sha256(f.read_bytes()).hexdigest()
    seen = []
    import sparsehalo.io as io_mod

    real = io_mod._stage

    def spy(stage, path):
        if stage == "sidecar" and path == f:
            seen.append(sidecar(f).read_text())
            verify(f)  # the old file on disk still verifies
        real(stage, path)

    monkeypatch.setattr(io_mod, "_stage", spy)
    write_json(f, {"v": 2}, checksum=True)
    new = hashlib.sha256(f.read_bytes()).hexdigest()
    assert seen == [f"{new}  c.json\n{old}  c.json\n"]
    assert sidecar(f).read_text() == f"{new}  c.json\n"


def test_a_failed_write_leaves_file_and_sidecar_as_they_were(tmp_path):
    f = tmp_path / "x.bin"
    atomic_write_bytes(f, lambda h: h.write(b"first"), checksum=True)
    before = (f.read_bytes(), sidecar(f).read_bytes())

    def boom(h):
        h.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write_bytes(f, boom, checksum=True)
    assert (f.read_bytes(), sidecar(f).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.bin.sha256"]  # no temp file left


def test_cli_resume_and_eval_of_a_corrupt_checkpoint_exit_2_in_one_line(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    paths.summary(copy).unlink()
    sidecar(paths.summary(copy)).unlink()  # unfinished: train resumes from the checkpoint
    ckpt = paths.checkpoint(copy)
    ckpt.write_bytes(flipped(ckpt, ckpt.stat().st_size // 2))
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    from sparsehalo import training
    from sparsehalo.config import from_dict

    with pytest.raises(IntegrityError, match="checkpoint.pt.*is corrupt"):
        training.train(from_dict(json.loads(paths.config(copy).read_text())), copy, echo=lambda s: None)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before  # nothing rewritten
    code = cli.main(["eval", str(ckpt)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "corrupt" in err[0]
