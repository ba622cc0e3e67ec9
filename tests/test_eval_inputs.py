"""`sparsehalo eval` on every file sparsehalo writes, and the checks of a run it reads from.

A one-shot run's checkpoint.pt (mask None), a pruned/*.pt and a *.sparse.safetensors export evaluate
to the same accuracies their writers measured; a sparse export without a config is measured only.
A checkpoint that is not its run's, or a damaged file, is refused in one line with exit code 2 and
nothing changed; an unfinished or diverged run is evaluated with a one-line warning.
"""

import json

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import io, models, paths
from sparsehalo.export import export_run, export_sparse
from sparsehalo.posthoc import prune_run
from sparsehalo.training import train

from support import cli


def refused(capsys, *args, needle):
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert len(err) == 1, err
    assert err[0].startswith("sparsehalo: error: ") and "Traceback" not in err[0]
    assert needle in err[0], err[0]
    return err[0]


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path, tiny_settings):
    """A finished one-shot HALO run (no mask in its checkpoint)."""
    cfg = config_mod.load(None, [*tiny_settings, "train.epochs=1", "prune.levels=[0.5]"])
    run_dir = cfg.run_dir(tmp_path / "runs")
    train(cfg, run_dir, echo=lambda s: None)
    return run_dir


def test_eval_of_a_one_shot_runs_checkpoint(run, capsys):
    ckpt = io.load_torch(paths.checkpoint(run))
    assert ckpt["mask"] is None  # the case that used to fail
    rc, out, err = cli(capsys, "eval", paths.checkpoint(run), "--json")
    assert rc == 0 and err == [], err
    r = json.loads(out)
    summary = json.loads(paths.summary(run).read_text())
    assert r["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-9)
    assert r["sparsity"] == 0.0 and r["dataset"] == "synthetic" and r["model"] == "lenet300"
    rc, out, err = cli(capsys, "eval", paths.checkpoint(run))
    assert rc == 0 and err == [] and "test accuracy" in out


def test_eval_of_a_pruned_checkpoint_matches_prune(run, capsys):
    s = prune_run(run, 0.9)
    rc, out, err = cli(capsys, "eval", s["checkpoint"], "--json")
    assert rc == 0 and err == [], err
    r = json.loads(out)
    assert r["test_accuracy"] == pytest.approx(s["test_accuracy_after"], abs=1e-9)
    assert r["sparsity"] == pytest.approx(s["sparsity_measured"], abs=1e-12)


def test_eval_of_a_sparse_export_evaluates_on_its_stored_dataset(run, capsys):
    prune_run(run, 0.9)
    report = export_run(run, "sparse", sparsity=0.9)
    rc, out, err = cli(capsys, "eval", report["path"], "--json")
    assert rc == 0 and err == [], err
    r = json.loads(out)
    s = json.loads(paths.pruned_summary(run, 0.9).read_text())
    assert r["dataset"] == "synthetic" and r["model"] == "lenet300"
    assert r["test_accuracy"] == pytest.approx(s["test_accuracy_after"], abs=1e-9)
    assert r["sparsity"] == pytest.approx(s["sparsity_measured"], abs=1e-12)
    rc, out, err = cli(capsys, "eval", report["path"])
    assert rc == 0 and "test accuracy" in out and "install" not in out + "".join(err)


def test_eval_of_a_sparse_export_without_config_reports_sparsity_only(tmp_path, capsys):
    torch.manual_seed(0)
    model = models.build("lenet300")
    with torch.no_grad():
        model.fc1.weight[:, :392] = 0  # half of fc1
    export_sparse(model, tmp_path / "bare.sparse.safetensors")  # no metadata: no config, no dataset
    rc, out, err = cli(capsys, "eval", tmp_path / "bare.sparse.safetensors", "--json")
    assert rc == 0 and err == [], err
    r = json.loads(out)
    assert r["dataset"] is None and r["test_accuracy"] is None and "dataset unknown" in r["note"]
    assert r["sparsity"] == pytest.approx(300 * 392 / 266_200)  # the three Linear weights
    rc, out, err = cli(capsys, "eval", tmp_path / "bare.sparse.safetensors")
    assert rc == 0 and "not evaluated" in out and "dataset unknown" in out and "fc1.weight" in out
    assert "install" not in out + "".join(err)


def test_a_dataset_named_by_import_path_in_an_export_is_never_imported(run, tmp_path, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef data():\n    return None\n")
    cfg = json.loads(paths.config(run).read_text())
    cfg["data"]["name"] = f"{tmp_path / 'evil.py'}:data"
    model = models.build("lenet300")
    path = tmp_path / "m.sparse.safetensors"
    export_sparse(model, path, metadata={"config": json.dumps(cfg), "num_classes": "10"})
    rc, out, err = cli(capsys, "eval", path, "--json")
    assert rc == 0 and err == [], err
    r = json.loads(out)
    assert r["test_accuracy"] is None and "never imported" in r["note"]
    assert not marker.exists()


def test_eval_help_names_the_inputs(capsys):
    rc, out, _ = cli(capsys, "eval", "--help")
    assert rc == 0
    text = " ".join(out.split())
    assert "checkpoint.pt" in text and "pruned/*.pt" in text and "*.sparse.safetensors" in text


# --- bad inputs: exit 2, one line, nothing changed ------------------------------------------------------


@pytest.mark.parametrize("content", [b"\x00" * 64, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", b""])
def test_a_damaged_sparse_export_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.sparse.safetensors"
    path.write_bytes(content)
    line = refused(capsys, "eval", path, needle=str(path))
    assert "install" not in line
    assert path.read_bytes() == content


def test_a_truncated_sparse_export_is_one_line(run, capsys):
    report = export_run(run, "sparse")
    path = paths.sparse_export(run)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    assert "install" not in refused(capsys, "eval", report["path"], needle="sparse export")
    assert snapshot(run) == before


def other_config(run):
    """Point the run's config.json at another config (its sidecar kept valid)."""
    cfg = json.loads(paths.config(run).read_text())
    cfg["train"]["epochs"] = cfg["train"]["epochs"] + 1
    io.write_json(paths.config(run), cfg, checksum=True)


def test_a_checkpoint_of_another_config_is_refused(run, capsys):
    prune_run(run, 0.5)
    other_config(run)
    before = snapshot(run)
    refused(capsys, "eval", paths.checkpoint(run), needle="belongs to another config")
    refused(capsys, "eval", paths.pruned_checkpoint(run, 0.5), needle="belongs to another config")
    assert snapshot(run) == before


def test_an_unreadable_run_config_is_refused(run, capsys):
    paths.config(run).write_text("{not json")  # and its sidecar no longer matches
    before = snapshot(run)
    refused(capsys, "eval", paths.checkpoint(run), needle="config.json")
    assert snapshot(run) == before


def test_an_unfinished_run_is_evaluated_with_one_warning(run, capsys):
    paths.summary(run).unlink()
    io.sidecar(paths.summary(run)).unlink()
    before = snapshot(run)
    rc, out, err = cli(capsys, "eval", paths.checkpoint(run))
    assert rc == 0 and "test accuracy" in out
    assert len(err) == 1 and err[0].startswith("sparsehalo: warning: ") and "unfinished" in err[0], err
    assert "after epoch 1 of 1" in err[0]
    assert snapshot(run) == before


def test_a_diverged_checkpoint_is_evaluated_with_one_warning(run, capsys):
    ckpt = io.load_torch(paths.checkpoint(run))
    ckpt["model"]["fc1.weight"][0, 0] = float("nan")
    io.save_torch(paths.checkpoint(run), ckpt)
    rc, out, err = cli(capsys, "eval", paths.checkpoint(run), "--json")
    assert rc == 0, err
    assert len(err) == 1 and "non-finite weights" in err[0] and "diverged" in err[0], err
    assert json.loads(out)["checkpoint"] == str(paths.checkpoint(run))
