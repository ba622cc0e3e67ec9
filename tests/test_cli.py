"""The command line: train / prune / sweep / eval, one-line errors, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sparsehalo.io import load_torch

from support import ROOT, run_cli, shared_path


def _one_line_error(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("sparsehalo")
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    sets = [
        'data.name="synthetic"', "data.batch_size=64", "train.epochs=2", "penalty.xi=1e-3", "penalty.psi=1e-3",
        "prune.levels=[0.9]", "run.progress=false",
    ]
    args = ["train", ROOT / "configs" / "mnist_lenet300_halo.toml", "--out", out]
    for s in sets:
        args += ["--set", s]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    run_dir = proc.stdout.strip().splitlines()[-1]
    assert os.path.isdir(run_dir) and os.path.basename(run_dir).startswith("mnist_lenet300_halo-")
    return run_dir


def test_prune_json_summary(trained_run):
    proc = run_cli("prune", trained_run, "--sparsity", "0.98", "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    for key in ("test_accuracy_before", "test_accuracy_after", "sparsity_requested", "sparsity_measured", "layers", "denominator"):
        assert key in s, key
    assert s["sparsity_requested"] == 0.98
    assert s["sparsity_measured"] == round(0.98 * 266200) / 266200
    assert sum(l["total"] - l["nonzero"] for l in s["layers"]) == round(0.98 * 266200)
    assert "266,200" in s["denominator"]
    assert 0 <= s["test_accuracy_after"] <= 100
    # the pruned checkpoint evaluates to the same accuracy and keeps its zeros
    ev = run_cli("eval", s["checkpoint"], "--json")
    assert ev.returncode == 0, ev.stderr
    e = json.loads(ev.stdout)
    assert e["test_accuracy"] == pytest.approx(s["test_accuracy_after"], abs=1e-9)
    assert e["sparsity"] == pytest.approx(s["sparsity_measured"], abs=1e-12)


def test_prune_layer_scope_and_table(trained_run):
    proc = run_cli("prune", trained_run, "--sparsity", "0.9", "--scope", "layer")
    assert proc.returncode == 0, proc.stderr
    assert "measured 90.0000%" in proc.stdout
    assert "fc1.weight" in proc.stdout and "no fine-tuning" in proc.stdout


def test_export_sparse_and_dense_round_trip(trained_run, tmp_path):
    assert run_cli("prune", trained_run, "--sparsity", "0.98").returncode == 0
    proc = run_cli("export", trained_run, "--format", "sparse", "--sparsity", "0.98", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["file_bytes"] <= 0.03 * rep["dense_fp32_bytes"] + 4096  # 3% target, plus the stored config
    import sparsehalo

    model = sparsehalo.load_sparse(rep["path"])
    pruned = torch.load(os.path.join(trained_run, "pruned", "sparsity-0.98.pt"), weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, pruned[k]), k
    dense = run_cli("export", trained_run, "--format", "dense", "--out", tmp_path / "m.pt")
    assert dense.returncode == 0, dense.stderr
    sd = torch.load(tmp_path / "m.pt", weights_only=True)
    fresh = sparsehalo.models.build("lenet300")
    fresh.load_state_dict(sd)  # the unmodified model class
    assert "fp16" in _one_line_error(run_cli("export", trained_run, "--format", "dense", "--fp16"))


def test_export_finds_a_prune_of_either_scope(trained_run, tmp_path):
    """`export --sparsity S` finds pruned/sparsity-S.pt and pruned/sparsity-S-layer.pt alike."""
    import sparsehalo

    assert run_cli("prune", trained_run, "--sparsity", "0.7", "--scope", "layer").returncode == 0
    layer = run_cli("export", trained_run, "--format", "sparse", "--sparsity", "0.7", "--out", tmp_path / "layer.safetensors")
    assert layer.returncode == 0, layer.stderr
    pruned = torch.load(os.path.join(trained_run, "pruned", "sparsity-0.7-layer.pt"), weights_only=True)["model"]
    model = sparsehalo.load_sparse(tmp_path / "layer.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, pruned[k]), k
    # With both scopes present the user must say which; each then exports its own weights.
    assert run_cli("prune", trained_run, "--sparsity", "0.7").returncode == 0
    assert "--scope" in _one_line_error(run_cli("export", trained_run, "--format", "dense", "--sparsity", "0.7"))
    for scope, stem in (("global", "sparsity-0.7"), ("layer", "sparsity-0.7-layer")):
        out = tmp_path / f"{scope}.pt"
        proc = run_cli("export", trained_run, "--format", "dense", "--sparsity", "0.7", "--scope", scope, "--out", out)
        assert proc.returncode == 0, proc.stderr
        want = torch.load(os.path.join(trained_run, "pruned", f"{stem}.pt"), weights_only=True)["model"]
        got = torch.load(out, weights_only=True)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_help_and_choices_come_from_the_config_fields_and_registries():
    from sparsehalo.cli import build_parser
    from sparsehalo.config import describe
    from sparsehalo.data import downloadable
    from sparsehalo.models import names
    from sparsehalo.pruning import SCOPES

    text = run_cli("train", "--help").stdout
    for key, _, _, help_text in describe():
        assert key in text and help_text[:30] in " ".join(text.split()), key
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    opts = {a.dest: a for a in sub["download"]._actions}
    assert list(opts["name"].choices) == downloadable() and "fashion-mnist" in downloadable()
    assert list({a.dest: a for a in sub["prune"]._actions}["scope"].choices) == SCOPES.names()
    assert list({a.dest: a for a in sub["eval"]._actions}["model"].choices) == names()


def test_sweep_writes_csv_and_plot(trained_run):
    proc = run_cli("sweep", trained_run, "--sparsities", "0.5,0.9")
    assert proc.returncode == 0, proc.stderr
    lines = open(os.path.join(trained_run, "sweep.csv")).read().strip().splitlines()
    assert lines[0].startswith("sparsity_requested,sparsity_measured,test_accuracy")
    assert len(lines) == 3
    png = open(os.path.join(trained_run, "sweep.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "configs/nope.toml"], "not found"),
        (["train", "configs/mnist_lenet300_halo.toml", "--set", "train.epoch=2"], "did you mean 'train.epochs'"),
        (["train", "configs/mnist_lenet300_halo.toml", "--set", "novalue"], "key=value"),
        (["prune", "runs/none", "--sparsity", "1.5"], "sparsities must be in [0, 1)"),
        (["prune", "/nonexistent/run", "--sparsity", "0.5"], "not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    line = _one_line_error(run_cli(*args))
    assert needle in line


def test_missing_dataset_is_one_line(tmp_path):
    proc = run_cli("train", "configs/mnist_lenet300_halo.toml", "--data-dir", tmp_path, "--out", tmp_path)
    line = _one_line_error(proc)
    assert "train-images-idx3-ubyte" in line


def test_corrupt_and_malicious_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00" * 100)
    assert "cannot read checkpoint" in _one_line_error(run_cli("eval", bad))

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "config": "{}"}, evil)
    assert "cannot read checkpoint" in _one_line_error(run_cli("eval", evil))
    assert not marker.exists()


def test_divergence_exit_code(tmp_path):
    proc = run_cli(
        "train", "configs/mnist_lenet300_halo.toml", "--out", tmp_path, "--set", 'data.name="synthetic"',
        "--set", "optim.lr=1e30", "--set", "train.epochs=1", "--quiet",
    )
    assert "non-finite loss" in _one_line_error(proc, code=3)


def test_help_for_every_command(capsys):
    """In this process (the console entry point itself is run by the other tests)."""
    from sparsehalo.cli import main

    for cmd in ("train", "prune", "sweep", "eval", "demo", "download", "report", "export"):
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0 and "usage: sparsehalo " + cmd in capsys.readouterr().out


def test_sigkill_mid_training_then_resume_matches_uninterrupted(tmp_path):
    """Real MNIST (a 20k-example training subset), killed with SIGKILL during epoch 2, then re-run."""
    sets = ["train.epochs=3", "data.val_size=40000", "run.progress=false", "run.eval_pruned_every=0", "prune.levels=[0.9]"]
    base = [sys.executable, "-m", "sparsehalo.cli", "train", "configs/mnist_lenet300_halo.toml"]
    for s in sets:
        base += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def cmd(out):
        return base + ["--out", str(out), "--quiet"]

    full = subprocess.run(cmd(tmp_path / "a"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    run_a = full.stdout.strip().splitlines()[-1]

    proc = subprocess.Popen(cmd(tmp_path / "b"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_b = None
    deadline = time.time() + 240
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("*/checkpoint.pt"))
        if found:
            run_b = found[0].parent
            break
        time.sleep(0.02)
    assert run_b is not None, "no checkpoint appeared"
    time.sleep(0.3)  # well into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_b / "summary.json").exists()
    assert load_torch(run_b / "checkpoint.pt")["epoch"] < 3

    again = subprocess.run(cmd(tmp_path / "b"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == str(run_b)
    a = load_torch(os.path.join(run_a, "checkpoint.pt"))
    b = load_torch(run_b / "checkpoint.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["penalty"]:
        assert torch.equal(a["penalty"][k], b["penalty"][k]), k
    assert len(b["history"]) == 3


def test_seeds_and_report(tmp_path):
    args = ["train", "configs/mnist_lenet300_halo.toml", "--out", tmp_path / "runs", "--seeds", "0,1", "--quiet"]
    for s in ['data.name="synthetic"', "data.batch_size=128", "train.epochs=1", "prune.levels=[0.5, 0.9]", "penalty.xi=1e-3"]:
        args += ["--set", s]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    dirs = proc.stdout.strip().splitlines()
    assert len(dirs) == 2 and dirs[0] != dirs[1]
    seeds = sorted(json.load(open(os.path.join(d, "summary.json")))["seed"] for d in dirs)
    assert seeds == [0, 1]
    rep = run_cli("report", tmp_path / "runs", "--out", tmp_path / "report")
    assert rep.returncode == 0, rep.stderr
    csv_lines = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("model,method,sparsity,seeds,acc_mean,acc_std,epochs")
    row = next(l for l in csv_lines[1:] if l.split(",")[2] in ("0.9",))
    accs = [json.load(open(os.path.join(d, "summary.json")))["pruned_test_accuracy"]["0.9"] for d in dirs]
    fields = row.split(",")
    assert int(fields[3]) == 2
    assert float(fields[4]) == pytest.approx(sum(accs) / 2, abs=1e-6)
    assert (tmp_path / "report" / "report.md").read_text().count("±") >= 1
    assert "--seeds" in run_cli("train", "--help").stdout
    assert "distinct" in _one_line_error(run_cli("train", "configs/mnist_lenet300_halo.toml", "--seeds", "1,1"))


def released(name: str):
    """One of the authors' released checkpoints (skipped without ../shared; CI always has it)."""
    return shared_path("reference", "halo-released", name)


@pytest.mark.parametrize("name,sparsity,acc", [("res50_c100_pruned_0.7.pth.tar", 70.0, 70.70), ("res50_c100_pruned_0.95.pth.tar", 95.0, 65.57)])
def test_eval_released_checkpoints(name, sparsity, acc):
    proc = run_cli("eval", released(name), "--model", "resnet", "--depth", "50", "--num-classes", "100", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert round(100 * r["conv_sparsity"], 1) == sparsity
    assert r["acc"] == pytest.approx(acc)
    text = run_cli("eval", released(name), "--model", "resnet", "--depth", "50", "--num-classes", "100")
    assert f"Conv2d weight sparsity {sparsity:.2f}%" in text.stdout


def test_eval_external_wrong_model_is_one_line():
    line = _one_line_error(run_cli("eval", released("res50_c100_pruned_0.7.pth.tar"), "--model", "resnet", "--depth", "20", "--num-classes", "100"))
    assert "unexpected" in line or "missing" in line


def test_analyze_energy_on_a_conv_run(tmp_path):
    args = ["train", "configs/mnist_lenet5_dense.toml", "--out", tmp_path, "--quiet"]
    for s in ['data.name="synthetic"', "train.epochs=1", "data.batch_size=128", "prune.levels=[0.5]"]:
        args += ["--set", s]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    run = proc.stdout.strip().splitlines()[-1]
    en = run_cli("analyze", "energy", run, "--json")
    assert en.returncode == 0, en.stderr
    r = json.loads(en.stdout)
    assert set(r["layers"]) == {"conv1", "conv2"}
    assert r["layers"]["conv1"]["channels"] == 6 and 1 <= r["layers"]["conv1"]["n90"] <= 6
    spectra = json.load(open(os.path.join(run, "energy.json")))["spectra"]
    assert sum(spectra["conv2"]) == pytest.approx(1.0)
    assert open(os.path.join(run, "energy.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_one_epoch_cifar10_from_the_jpeg_archive(tmp_path):
    """End to end on CPU from the shared JPEG archive (decoded once, cached): a small ResNet, 1 epoch on a
    1,000-image training subset, HALO, one-shot pruning, evaluation on the 10,000 test images."""
    args = ["train", "configs/cifar10_resnet20_cpu_halo.toml", "--out", tmp_path, "--quiet",
            "--data-dir", shared_path("datasets")]
    for s in ["model.kwargs={depth=8}", "train.epochs=1", "data.train_size=1000", "prune.levels=[0.5]", "run.eval_pruned_every=0"]:
        args += ["--set", s]
    proc = run_cli(*args, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = proc.stdout.strip().splitlines()[-1]
    s = json.load(open(os.path.join(run, "summary.json")))
    assert s["dataset"] == "cifar10" and s["model"] == "resnet" and s["epochs"] == 1
    (p0, p5) = s["points"]
    assert p5["sparsity_measured"] == pytest.approx(0.5, abs=1e-5)
    assert 10.0 <= p0["test_accuracy"] <= 100.0
    assert "Conv2d weights" in p5["denominator"]
    assert list((tmp_path / "cache").rglob("*.npz")), "the decoded archive was not cached"
