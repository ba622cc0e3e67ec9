"""The slim format (plain state dict + architecture JSON), examples/load_slim.py, and the CLI:
`prune RUN --structured` and `export RUN --format slim`."""

import ast
import copy
import json
import subprocess
import sys

import pytest
import torch

from sparsehalo import config as config_mod
from sparsehalo import io, models, paths
from sparsehalo.export.slim import describe, export_slim, json_path
from sparsehalo.measure import evaluate
from sparsehalo.pruning import prune_channels, slim
from sparsehalo.training import load_data, train

from support import ROOT, cli

EXAMPLE = ROOT / "examples" / "load_slim.py"
# run the example with sparsehalo made unimportable: it must rebuild the model from the files alone
RUN_EXAMPLE = ("import runpy, sys; sys.modules['sparsehalo'] = None; sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")


def run_example(weights, out):
    r = subprocess.run([sys.executable, "-c", RUN_EXAMPLE, str(EXAMPLE), str(weights), "--save", str(out)],
                       capture_output=True, text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout, torch.load(out, weights_only=True)


def seeded_batch(shape):
    return torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))  # the example's input


def test_example_imports_nothing_from_sparsehalo():
    tree = ast.parse(EXAMPLE.read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and not any(m.split(".")[0] == "sparsehalo" for m in imported)
    assert len(EXAMPLE.read_text().splitlines()) <= 75


@pytest.mark.parametrize("name,kw,shape", [("lenet5_caffe", {}, (1, 28, 28)), ("resnet", {"depth": 20}, (3, 32, 32))])
def test_example_rebuilds_the_slim_model(tmp_path, name, kw, shape):
    torch.manual_seed(0)
    model = models.build(name, **kw).eval()
    mask = prune_channels(copy.deepcopy(model), shape, macs=0.5)
    small = slim(model, mask)
    report = export_slim(small, tmp_path / "model.slim.pt", shape)
    assert report["portable"] and report["params"] == sum(p.numel() for p in small.parameters())
    state = torch.load(tmp_path / "model.slim.pt", weights_only=True)  # a plain state dict
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in small.state_dict().items()}
    desc = json.loads(json_path(report["path"]).read_text())
    first = mask.groups[0][0]
    width = desc["modules"][first].get("out_channels", desc["modules"][first].get("out_features"))
    assert width == int(mask[first].sum())
    for f in (report["path"], report["json"]):
        io.verify(f)  # sidecars
    stdout, y = run_example(report["path"], tmp_path / "y.pt")
    with torch.no_grad():
        want = small(seeded_batch(shape))
    torch.testing.assert_close(y, want, atol=1e-6, rtol=1e-6)
    assert f"{report['params']:,} parameters" in stdout


def test_a_model_outside_the_portable_set_gets_widths_only():
    desc = describe(models.build("vit_tiny"), (1, 28, 28))
    assert desc["graph"] is None and "not a portable torch.nn layer" in desc["graph_note"]
    assert desc["modules"]["head"]["type"] == "Linear" and desc["modules"]["head"]["in_features"] == 96


def test_no_overwrite_of_other_content(tmp_path):
    a, b = models.build("lenet300"), models.build("lenet300")
    export_slim(a, tmp_path / "m.pt", (1, 28, 28))
    export_slim(a, tmp_path / "m.pt", (1, 28, 28), overwrite=False)  # the same bytes again
    with pytest.raises(Exception, match="exists and differs"):
        export_slim(b, tmp_path / "m.pt", (1, 28, 28), overwrite=False)
    export_slim(b, tmp_path / "m.pt", (1, 28, 28))


# --- a trained run through the command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    settings = ['data.name="synthetic"', "data.batch_size=64", "data.eval_batch_size=256", "train.epochs=1",
                'model.name="lenet5_caffe"', "prune.levels=[]", "run.progress=false", 'run.device="cpu"']
    cfg = config_mod.load(None, settings)
    run_dir = cfg.run_dir(tmp_path_factory.mktemp("runs"))
    train(cfg, run_dir, echo=lambda s: None)
    return run_dir, cfg


def test_prune_structured_and_export_slim(run, capsys, tmp_path):
    run_dir, cfg = run
    rc, out, err = cli(capsys, "prune", run_dir, "--structured", "--macs", "0.5")
    assert rc == 0, err
    ckpt, summary_path = paths.slim_checkpoint(run_dir, "macs-0.5"), paths.slim_summary(run_dir, "macs-0.5")
    assert out.strip().splitlines()[-1] == str(ckpt) and ckpt.is_file() and io.sidecar(ckpt).is_file()
    s = io.read_json(summary_path)
    assert "test accuracy:" in out and "MACs per example" in out and "parameters" in out
    assert s["test_accuracy_after"] == s["test_accuracy_masked"]  # slimming changes no prediction
    assert s["macs_removed"] >= 0.5 and s["params_after"] < s["params_before"]
    assert cli(capsys, "prune", run_dir, "--structured", "--macs", "0.5")[0] == 0  # the same again: rewritten

    rc, out, err = cli(capsys, "export", run_dir, "--format", "slim", "--macs", "0.5")
    assert rc == 0, err
    weights = paths.slim_export(run_dir)
    assert str(weights) in out and json_path(weights).is_file() and io.sidecar(json_path(weights)).is_file()
    # the example's rebuild has the slim model's test accuracy
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import load_slim
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    model, _ = load_slim.load(weights)
    data = load_data(cfg, torch.device("cpu"), validation=False)
    assert evaluate(model, data.test.batches(256))["accuracy"] == s["test_accuracy_after"]

    # other results under the same name are refused without --force
    stored = io.load_torch(ckpt)
    io.save_torch(ckpt, {**stored, "target_value": 0.25})
    rc, _, err = cli(capsys, "prune", run_dir, "--structured", "--macs", "0.5")
    assert rc == 2 and len(err) == 1 and "--force" in err[0]
    assert cli(capsys, "prune", run_dir, "--structured", "--macs", "0.5", "--force")[0] == 0


def test_layer_scope_and_channel_target_are_named_apart(run, capsys):
    run_dir, _ = run
    rc, _, err = cli(capsys, "prune", run_dir, "--structured", "--channels", "0.3", "--scope", "layer", "--json")
    assert rc == 0, err
    s = io.read_json(paths.slim_summary(run_dir, "channels-0.3-layer"))
    assert s["units_removed"] == sum(min(round(0.3 * r["units"]), r["units"] - 1) for r in s["layers"])
    assert s["test_accuracy_after"] == s["test_accuracy_masked"]


@pytest.mark.parametrize("args,message", [
    (["prune", "{run}", "--structured"], "one target"),
    (["prune", "{run}", "--macs", "0.5"], "add --structured"),
    (["prune", "{run}", "--structured", "--macs", "0.5", "--sparsity", "0.5"], "not --sparsity"),
    (["prune", "{run}"], "needs --sparsity"),
    (["prune", "{run}", "--structured", "--macs", "1.5"], "must be in [0, 1)"),
    (["export", "{run}", "--format", "slim"], "--channels C or --macs M"),
    (["export", "{run}", "--format", "slim", "--macs", "0.3"], "--structured --macs 0.3"),
    (["export", "{run}", "--format", "dense", "--macs", "0.5"], "structured prune for --format slim"),
])
def test_bad_input_is_one_line(run, capsys, args, message):
    rc, _, err = cli(capsys, *[a.format(run=run[0]) for a in args])
    assert rc == 2 and len(err) == 1 and err[0].startswith("sparsehalo") and message in err[0]
