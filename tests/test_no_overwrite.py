"""Nothing existing is overwritten without --force (the README's promise): export, report and prune.

export: an existing output with the same bytes is written again (idempotent), one with other bytes
is refused in one line naming it and --force.  report: only files listed in the directory's manifest
with their current SHA-256 (an earlier report, unchanged) are replaced.  prune: other options than an
earlier prune at the same sparsity get their own file name; a file of the same options that holds
other results is refused.  Every refusal: exit code 2, one line on stderr, every file unchanged.
"""

import json
import re

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import io, paths
from sparsehalo.errors import SparsehaloError
from sparsehalo.export import export_run, find_source
from sparsehalo.posthoc import prune_run
from sparsehalo.results import make_report
from sparsehalo.results.report import MANIFEST
from sparsehalo.training import train

from support import ROOT, cli


def ok(capsys, *args):
    rc, out, err = cli(capsys, *args)
    assert rc == 0, (rc, err)
    assert err == [], err
    return out


def refused(capsys, *args, needles=()):
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert len(err) == 1, err
    assert err[0].startswith("sparsehalo: error: ") and "Traceback" not in err[0]
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


def snapshot(*roots):
    return {p: p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def make_run(tmp_path, tiny_settings):
    def make(seed=0, penalty="halo"):
        cfg = config_mod.load(None, [*tiny_settings, "train.epochs=1", f"train.seed={seed}", f'penalty.name="{penalty}"'])
        run_dir = cfg.run_dir(tmp_path / "runs")
        train(cfg, run_dir, echo=lambda s: None)
        return run_dir

    return make


@pytest.fixture
def run(make_run):
    return make_run()


# --- export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_export_again_is_idempotent_and_other_content_is_refused(run, tmp_path, capsys, fmt):
    default = paths.sparse_export(run) if fmt == "sparse" else paths.dense_export(run)
    ok(capsys, "export", run, "--format", fmt)
    first = default.read_bytes()
    ok(capsys, "export", run, "--format", fmt)  # the same content again: fine
    assert default.read_bytes() == first
    io.verify(default)  # a dense export's sidecar still matches

    prune_run(run, 0.9)
    before = snapshot(run)
    line = refused(capsys, "export", run, "--format", fmt, "--sparsity", "0.9", needles=(str(default), "--force"))
    assert "exists" in line
    assert snapshot(run) == before  # the export and its sidecar alike

    out = ok(capsys, "export", run, "--format", fmt, "--sparsity", "0.9", "--force")
    assert str(default) in out and default.read_bytes() != first
    io.verify(default)
    ok(capsys, "export", run, "--format", fmt, "--sparsity", "0.9")  # now the same again


def test_export_refuses_a_users_file_at_out(run, tmp_path, capsys):
    mine = tmp_path / "notes.pt"
    mine.write_bytes(b"my own file")
    refused(capsys, "export", run, "--format", "dense", "--out", mine, needles=(str(mine), "--force"))
    assert mine.read_bytes() == b"my own file" and not io.sidecar(mine).exists()
    ok(capsys, "export", run, "--format", "dense", "--out", mine, "--force")
    assert torch.load(mine, weights_only=True).keys() == io.load_torch(paths.checkpoint(run))["model"].keys()


def test_export_run_in_python_refuses_too(run):
    export_run(run, "sparse")
    prune_run(run, 0.5)
    with pytest.raises(SparsehaloError, match="--force"):
        export_run(run, "sparse", sparsity=0.5)
    assert export_run(run, "sparse", sparsity=0.5, force=True)["source"] == str(paths.pruned_checkpoint(run, 0.5))


# --- report ----------------------------------------------------------------------------------------------


def test_report_refuses_files_it_did_not_write(make_run, tmp_path, capsys):
    runs = make_run(0).parent
    make_run(1)
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    (out / "summary.csv").write_text("a,b\n1,2\n")
    before = snapshot(out)
    line = refused(capsys, "report", runs, "--out", out, "--no-scales", needles=("--force",))
    assert "report.md" in line and "summary.csv" in line
    assert snapshot(out) == before  # nothing written, no manifest, no figure

    ok(capsys, "report", runs, "--out", out, "--no-scales", "--force")
    assert "my own notes" not in (out / "report.md").read_text()
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert set(manifest) == {p.name for p in out.iterdir() if p.name != MANIFEST}
    assert all(io.sha256_file(out / name) == h for name, h in manifest.items())


def test_report_replaces_its_own_unchanged_files_only(make_run, tmp_path, capsys):
    runs = make_run(0).parent
    out = tmp_path / "report"
    ok(capsys, "report", runs, "--out", out, "--no-scales")
    first = snapshot(out)
    ok(capsys, "report", runs, "--out", out, "--no-scales")  # its own files, unchanged: replaced
    assert snapshot(out) == first

    with open(out / "summary.csv", "a") as f:
        f.write("edited by hand\n")
    before = snapshot(out)
    refused(capsys, "report", runs, "--out", out, "--no-scales", needles=("summary.csv", "--force"))
    assert snapshot(out) == before


def test_report_protects_a_users_scales_plot(run, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    name = json.loads(paths.summary(run).read_text())["name"]
    plot = out / f"scales_{name}.png"
    plot.write_bytes(b"my picture")
    refused(capsys, "report", run.parent, "--out", out, needles=(plot.name, "--force"))
    assert [p.name for p in out.iterdir()] == [plot.name] and plot.read_bytes() == b"my picture"


def test_make_report_takes_force(make_run, tmp_path):
    runs = make_run(0).parent
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("mine\n")
    with pytest.raises(SparsehaloError, match="report.md"):
        make_report([runs], out, scales=False)
    assert (out / "report.md").read_text() == "mine\n"
    written = make_report([runs], out, scales=False, force=True)
    assert "report.md" in written and (out / "report.md").read_text() != "mine\n"


def test_scripts_that_regenerate_committed_reports_pass_force():
    """Committed results directories have no manifest yet: their scripts must say --force."""
    text = (ROOT / "scripts" / "cifar10_cpu.sh").read_text()
    calls = [line for line in text.splitlines() if re.search(r"\$SH report ", line)]
    assert calls and all("--force" in line for line in calls)


# --- prune -----------------------------------------------------------------------------------------------


def test_prune_with_other_options_keeps_both(run, capsys):
    ok(capsys, "prune", run, "--sparsity", "0.9", "--json")
    default = paths.pruned_checkpoint(run, 0.9)
    first = snapshot(paths.pruned_dir(run))
    out = ok(capsys, "prune", run, "--sparsity", "0.9", "--min-density", "0.05", "--json")
    floored = paths.pruned_dir(run) / "sparsity-0.9-min0.05.pt"
    assert json.loads(out)["checkpoint"] == str(floored) and floored.is_file()
    assert all(p.read_bytes() == b for p, b in first.items())  # the first prune is untouched
    assert json.loads((paths.pruned_dir(run) / "sparsity-0.9-min0.05.json").read_text())["min_density"] == 0.05

    ok(capsys, "prune", run, "--sparsity", "0.9", "--min-density", "0.05")  # the same options again: same bytes
    both = snapshot(paths.pruned_dir(run))
    ok(capsys, "prune", run, "--sparsity", "0.9", "--min-density", "0.05")
    assert snapshot(paths.pruned_dir(run)) == both

    # export finds each, and lists both when told neither
    line = refused(capsys, "export", run, "--format", "dense", "--sparsity", "0.9", needles=("sparsity-0.9.pt", "sparsity-0.9-min0.05.pt"))
    assert "--min-density" in line
    assert find_source(run, 0.9, min_density=0.05) == floored
    assert find_source(run, 0.9, scope="global") == default
    want = io.load_torch(floored)["model"]
    ok(capsys, "export", run, "--format", "dense", "--sparsity", "0.9", "--min-density", "0.05")
    got = torch.load(paths.dense_export(run), weights_only=True)
    assert all(torch.equal(got[k], want[k]) for k in want)
    refused(capsys, "export", run, "--format", "dense", "--sparsity", "0.9", "--min-density", "0.2", "--out", run / "x.pt",
            needles=("sparsity-0.9-min0.2.pt", "--min-density 0.2"))
    assert not (run / "x.pt").exists()


def test_pruned_names_spell_every_option_that_is_not_the_default():
    assert paths.pruned_stem(0.98) == "sparsity-0.98"
    assert paths.pruned_stem(0.98, "layer") == "sparsity-0.98-layer"
    assert paths.pruned_stem(0.98, min_density=0.05) == "sparsity-0.98-min0.05"
    assert paths.pruned_stem(0.98, "layer", 0.05) == "sparsity-0.98-layer-min0.05"
    assert paths.pruned_stem(0.98, min_density=0) == "sparsity-0.98"  # no floor is the default
    for scope, m in (("global", None), ("layer", None), ("global", 0.05), ("layer", 1e-05)):
        name = paths.pruned_checkpoint(ROOT, 0.98, scope, m).name
        assert paths.pruned_options(0.98, name) == (scope, m)
    assert paths.pruned_options(0.9, "sparsity-0.98.pt") is None
    assert paths.pruned_options(0.98, "sparsity-0.98-min0.050.pt") is None


def test_prune_refuses_to_replace_other_results(run, capsys):
    ok(capsys, "prune", run, "--sparsity", "0.5")
    path = paths.pruned_checkpoint(run, 0.5)
    other = io.load_torch(path)
    other["model"]["fc1.weight"].zero_()  # as if the run's weights had changed since
    io.save_torch(path, other)
    before = snapshot(run)
    refused(capsys, "prune", run, "--sparsity", "0.5", needles=(str(path), "--force"))
    assert snapshot(run) == before
    ok(capsys, "prune", run, "--sparsity", "0.5", "--force")
    assert not torch.equal(io.load_torch(path)["model"]["fc1.weight"], other["model"]["fc1.weight"])


def test_prune_and_export_refuse_a_checkpoint_of_another_config(run, capsys):
    cfg = json.loads(paths.config(run).read_text())
    cfg["optim"]["lr"] = cfg["optim"]["lr"] * 2
    io.write_json(paths.config(run), cfg, checksum=True)
    before = snapshot(run)
    for args in (["prune", run, "--sparsity", "0.5"], ["sweep", run, "--sparsities", "0.5"], ["export", run, "--format", "sparse"]):
        refused(capsys, *args, needles=("belongs to another config",))
    assert snapshot(run) == before


def test_an_unfinished_run_warns_in_one_line(run, capsys):
    paths.summary(run).unlink()
    for args in (["prune", run, "--sparsity", "0.5"], ["export", run, "--format", "dense"]):
        rc, out, err = cli(capsys, *args)
        assert rc == 0, err
        assert len(err) == 1 and err[0].startswith("sparsehalo: warning: ") and "unfinished" in err[0], err
        assert str(run) in out  # the command still did its work


# --- the README's promise --------------------------------------------------------------------------------


def test_readme_promise_nothing_existing_is_overwritten(make_run, tmp_path, capsys):
    text = " ".join((ROOT / "README.md").read_text().split())
    assert "nothing existing is overwritten" in text and "--force" in text
    run = make_run(0)
    # export: an existing file at --out with other content
    target = tmp_path / "model.sparse.safetensors"
    target.write_bytes(b"precious")
    refused(capsys, "export", run, "--format", "sparse", "--out", target, needles=("--force",))
    assert target.read_bytes() == b"precious"
    # report: a user's report.md in --out
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("precious\n")
    refused(capsys, "report", run.parent, "--out", out, "--no-scales", needles=("--force",))
    assert [p.name for p in out.iterdir()] == ["report.md"] and (out / "report.md").read_text() == "precious\n"
    # prune: another prune at the same sparsity keeps the first one
    ok(capsys, "prune", run, "--sparsity", "0.8")
    first = snapshot(paths.pruned_dir(run))
    ok(capsys, "prune", run, "--sparsity", "0.8", "--scope", "layer")
    ok(capsys, "prune", run, "--sparsity", "0.8", "--min-density", "0.1")
    after = snapshot(paths.pruned_dir(run))
    assert all(after[p] == b for p, b in first.items()) and len(after) == 3 * len(first)
