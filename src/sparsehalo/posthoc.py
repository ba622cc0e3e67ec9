"""Operations on a finished run: prune, sweep, evaluate, energy.  The CLI commands are thin wrappers.

Every pruned measurement goes through :func:`sparsehalo.training.evaluate.pruned_report` (the one
prune-a-copy-and-measure); every file is named by :mod:`sparsehalo.paths`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path

import torch

from . import paths
from .config import from_dict
from .data import load_dataset
from .errors import CheckpointError, SparsehaloError
from .export.api import check_run
from .io import load_torch, new_figure, save_figure, save_torch, write_csv, write_json
from .measure import evaluate, sparsity_table
from .pruning import Mask
from .selection import prunable_parameters
from .training import build_model, config_of, load_data, load_run, resolve_device
from .training.evaluate import pruned_report

PRUNED_FORMAT = "sparsehalo-pruned-1"


@contextlib.contextmanager
def one_line_warnings(prefix: str = "sparsehalo: warning: "):
    """Inside, every warning is printed as one line ``<prefix><message>`` on stderr (for the CLI)."""
    with warnings.catch_warnings():
        def show(message, category, filename, lineno, file=None, line=None):
            text = " ".join(str(message).split())
            print(f"{prefix}{text}", file=sys.stderr if file is None else file)

        warnings.showwarning = show
        yield


def run_of(path: str | Path) -> Path | None:
    """The run directory ``path`` belongs to (``RUN/checkpoint.pt``, ``RUN/pruned/*.pt``), else None."""
    path = Path(path)
    if path.name == paths.checkpoint(path.parent).name and paths.is_run(path.parent):
        return path.parent
    if path.parent.name == paths.pruned_dir(path.parent.parent).name and paths.is_run(path.parent.parent):
        return path.parent.parent
    return None


def _load(run_dir: Path, device: str | None):
    state, ckpt = load_run(run_dir, resolve_device(device) if device else None)
    check_run(run_dir, ckpt, paths.checkpoint(Path(run_dir)))
    return state


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise SparsehaloError(f"--sparsity must be in [0, 1), got {sparsity}")


def _same_content(a, b) -> bool:
    """Whether two loaded torch objects hold the same values (tensors compared on the CPU, with dtype)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.detach().cpu(), b.detach().cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same_content(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_content(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _refuse_other_prune(path: Path, obj: dict) -> None:
    """Refuse to replace a pruned checkpoint that holds other results than ``obj``."""
    try:
        old = load_torch(path)
    except CheckpointError:
        old = None
    if old is None or not _same_content(old, obj):
        raise SparsehaloError(f"{str(path)!r} exists and holds other results (the run's weights changed since, or the file "
                              "is damaged); pass --force to replace it")


def prune_run(run_dir: str | Path, sparsity: float, scope: str = "global", min_density: float | None = None,
              device: str | None = None, force: bool = False) -> dict:
    """Prune a finished run's final weights; writes ``pruned/<stem>.pt`` and ``.json``.

    The stem (:func:`paths.pruned_stem`) spells every option that is not the default, so prunes at
    one sparsity with other options (``scope``, ``min_density``) are kept side by side.  The same
    options again rewrite the same results; an existing file with other results (the run's weights
    changed since) is only replaced with ``force``.

    Raises:
        SparsehaloError: a bad sparsity, or an existing pruned checkpoint with other results and no
            ``force``.
        CheckpointError: as :func:`check_run` (the checkpoint is not the run's).
    """
    _check_sparsity(sparsity)
    run_dir = Path(run_dir)
    state = _load(run_dir, device)
    with pruned_report(state, sparsity, scope, min_density) as (summary, mask):
        ckpt_path = paths.pruned_checkpoint(run_dir, sparsity, scope, min_density)
        obj = {
            "format": PRUNED_FORMAT,
            "config": json.dumps(state.config.to_dict()),
            "model": state.model.state_dict(),
            "mask": mask.state_dict(),
            "num_classes": state.data.num_classes,
            "sparsity_requested": sparsity,
            "scope": scope,
        }
        if ckpt_path.exists() and not force:
            _refuse_other_prune(ckpt_path, obj)
        save_torch(ckpt_path, obj)
    summary["checkpoint"] = str(ckpt_path)
    write_json(paths.pruned_summary(run_dir, sparsity, scope, min_density), summary, checksum=True)
    return summary


def prune_structured_run(run_dir: str | Path, channels: float | None = None, macs: float | None = None, scope: str = "global",
                         device: str | None = None, force: bool = False) -> dict:
    """Structured prune of a finished run's final weights (:func:`sparsehalo.pruning.prune_channels`, no
    fine-tuning), slimmed (:func:`sparsehalo.pruning.slim`); writes ``slim/<stem>.pt`` (config, the slim
    state dict, channel mask, architecture) and ``slim/<stem>.json`` (the summary), stem
    :func:`paths.slim_stem`.  Same rewrite / ``force`` rules as :func:`prune_run`.

    The summary has the test accuracy before, of the masked model and of the slim one (equal up to float
    rounding), parameters and dense MACs per example before and after, and the units kept per group.
    """
    import copy

    from .export.slim import describe
    from .measure import measure
    from .pruning import prune_channels, slim

    for name, value in (("--channels", channels), ("--macs", macs)):
        if value is not None and not 0.0 <= value < 1.0:
            raise SparsehaloError(f"{name} must be in [0, 1), got {value}")
    if (channels is None) == (macs is None):
        raise SparsehaloError("a structured prune takes one target: --channels C (a share of units) or --macs M (a share of MACs)")
    run_dir = Path(run_dir)
    state = _load(run_dir, device)
    model, shape = state.model, state.input_shape
    masked = copy.deepcopy(model)
    mask = prune_channels(masked, shape, channels=channels, macs=macs, scope=scope)
    small = slim(model, mask)
    before, cost_before, cost_after = evaluate(model, state.batches()), measure(model, shape), measure(small, shape)
    masked_r, after = evaluate(masked, state.batches()), evaluate(small, state.batches())
    summary = {
        "run": state.config.name, "config_hash": state.config.hash(), "structured": True, "scope": scope,
        "target": "macs" if macs is not None else "channels", "target_value": macs if macs is not None else channels,
        "fine_tuned": False, "units_total": mask.units_total, "units_removed": mask.units_removed,
        "test_accuracy_before": before["accuracy"], "test_accuracy_masked": masked_r["accuracy"], "test_accuracy_after": after["accuracy"],
        "test_loss_before": before["loss"], "test_loss_after": after["loss"],
        "params_before": cost_before["params_total"], "params_after": cost_after["params_total"],
        "macs_before": cost_before["flops_dense"], "macs_after": cost_after["flops_dense"],
        "macs_removed": 1 - cost_after["flops_dense"] / cost_before["flops_dense"] if cost_before["flops_dense"] else 0.0,
        "layers": mask.layer_stats(),
    }
    stem = paths.slim_stem(channels, macs, scope)
    path = paths.slim_checkpoint(run_dir, stem)
    obj = {"format": "sparsehalo-slim-1", "config": json.dumps(state.config.to_dict()),
           "model": {k: v.detach().cpu() for k, v in small.state_dict().items()}, "channel_mask": mask.state_dict(),
           "architecture": json.dumps(describe(small, shape)), "num_classes": state.data.num_classes, "scope": scope,
           "target": summary["target"], "target_value": summary["target_value"]}
    if path.exists() and not force:
        _refuse_other_prune(path, obj)
    save_torch(path, obj)
    summary["checkpoint"] = str(path)
    write_json(paths.slim_summary(run_dir, stem), summary, checksum=True)
    return summary


def format_structured(s: dict) -> str:
    """The lines ``sparsehalo prune --structured`` prints for a :func:`prune_structured_run` summary."""
    lines = []
    for row in s["layers"]:
        layers = row["layers"]
        name = layers[0] + (f" (+{len(layers) - 1} coupled)" if len(layers) > 1 else "")
        lines.append(f"{name:<40}{row['kept']:>6} of {row['units']:<6} units kept")
    return "\n".join(lines + [
        f"units removed {s['units_removed']:,} of {s['units_total']:,} ({s['scope']} scope, target {s['target']} {s['target_value']:g})",
        f"parameters {s['params_before']:,} -> {s['params_after']:,}; MACs per example {s['macs_before']:,} -> {s['macs_after']:,} "
        f"({100 * s['macs_removed']:.2f}% removed)",
        f"test accuracy: {s['test_accuracy_before']:.2f}% before, {s['test_accuracy_after']:.2f}% after slimming "
        f"(masked model {s['test_accuracy_masked']:.2f}%; no fine-tuning)",
        s["checkpoint"]])


def sweep_run(run_dir: str | Path, sparsities: list[float], scope: str = "global", device: str | None = None) -> list[dict]:
    """Accuracy after pruning the final weights at each sparsity; writes ``sweep.csv`` and ``sweep.png``."""
    for s in sparsities:
        _check_sparsity(s)
    run_dir = Path(run_dir)
    state = _load(run_dir, device)
    rows = []
    for s in sparsities:
        with pruned_report(state, s, scope) as (summary, _):
            rows.append({
                "sparsity_requested": s,
                "sparsity_measured": summary["sparsity_measured"],
                "test_accuracy": summary["test_accuracy_after"],
                "test_accuracy_dense": summary["test_accuracy_before"],
                "prunable_total": summary["prunable_total"],
                "prunable_nonzero": summary["prunable_nonzero"],
            })
    write_csv(paths.sweep_csv(run_dir), rows)
    plot_sweep(rows, paths.sweep_png(run_dir), title=f"{state.config.name} ({state.config.model.name}, {scope} magnitude pruning)",
               denominator=summary["denominator"])
    return rows


def plot_sweep(rows: list[dict], path: Path, title: str, denominator: str) -> None:
    """Test accuracy against the share of weights kept (log scale), with the unpruned accuracy."""
    fig = new_figure((6, 4))
    ax = fig.add_subplot()
    density = [100 * (1 - r["sparsity_measured"]) for r in rows]
    ax.plot(density, [r["test_accuracy"] for r in rows], "o-", label="pruned, no fine-tuning")
    ax.axhline(rows[0]["test_accuracy_dense"], color="grey", ls="--", label="before pruning")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(f"weights kept (%, of {denominator})", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def is_sparse_export(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file (a sparse export): by its name, else by its first bytes
    (an 8-byte little-endian header length, then the JSON header's ``{``)."""
    path = Path(path)
    if path.name.endswith(".safetensors"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def _file_table(state: dict, eps: float = 1e-3):
    """A sparsity table over a state dict's floating-point tensors of dim >= 2 (no model known)."""
    from .measure.sparsity import LayerSparsity, SparsityTable

    rows = []
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2:
            rows.append(LayerSparsity(name, t.numel(), int(t.count_nonzero()), int((t.abs() <= eps).sum()), tuple(t.shape)))
    if not rows:
        raise CheckpointError("the sparse export holds no floating-point tensor of dim >= 2 to measure")
    total = sum(r.total for r in rows)
    return SparsityTable(rows, eps, f"{total:,} entries of the file's floating-point tensors of dim >= 2 (model unknown)")


def _eval_sparse_export(path: Path, device: str | None, data_dir: str | None) -> dict:
    """:func:`eval_checkpoint` of a sparse export: rebuilt from its stored config and evaluated on
    its dataset, or (no config stored) measured only."""
    from .export import load_sparse, read_metadata, read_sparse_state
    from .imports import is_import_path

    meta = read_metadata(path)
    out = {"checkpoint": str(path), "format": meta.get("format", "unknown"), "model": None, "dataset": None,
           "test_accuracy": None, "test_loss": None}
    if "config" not in meta:
        table = _file_table(read_sparse_state(path)[0])
        out["note"] = "the file records no config: model and dataset unknown, sparsity only"
    else:
        model = load_sparse(path)  # rebuilt from the stored config (checked there)
        config = from_dict(json.loads(meta["config"]))
        out["model"] = config.model.name
        table = sparsity_table(model, prunable_parameters(model, types=tuple(config.prune.types), biases=config.prune.biases),
                               eps=config.prune.eps, label="prunable weights")
        if is_import_path(config.data.name):
            out["note"] = (f"dataset {config.data.name!r} is named by import path, which is never imported from a file: "
                           "dataset unknown, sparsity only")
        else:
            if data_dir:
                config.run.data_dir = data_dir
            dev = resolve_device(device or "auto")  # the file may have been trained elsewhere
            data = load_data(config, dev, validation=False)
            if "num_classes" in meta and meta["num_classes"] != str(data.num_classes):
                raise CheckpointError(f"sparse export {str(path)!r} has {meta['num_classes']} classes, its dataset "
                                      f"{config.data.name!r} {data.num_classes}")
            r = evaluate(model.to(dev), data.test.batches(config.data.eval_batch_size))
            out.update(dataset=config.data.name, test_accuracy=r["accuracy"], test_loss=r["loss"])
    out.update(sparsity=table.sparsity, natural_sparsity=table.natural_sparsity, denominator=table.denominator, table=str(table))
    return out


def eval_checkpoint(path: str | Path, device: str | None = None, data_dir: str | None = None) -> dict:
    """Evaluate a sparsehalo file on its dataset's test split.

    ``path`` is a run's ``checkpoint.pt`` (its mask is None for an unpruned one-shot run), a
    ``pruned/*.pt`` of ``sparsehalo prune``, or a sparse export (``*.sparse.safetensors``, rebuilt
    from the config it stores; without one, or with a dataset named by import path, only its sparsity
    is measured and ``dataset`` is None).  A file inside a run directory is first checked against the
    run (:func:`check_run`).
    """
    path = Path(path)
    if is_sparse_export(path):
        return _eval_sparse_export(path, device, data_dir)
    ckpt = load_torch(path, required=("model", "config"))
    run = run_of(path)
    if run is not None:
        check_run(run, ckpt, path)
    config = config_of(ckpt, path)
    if data_dir:
        config.run.data_dir = data_dir
    if device:
        config.run.device = device
    dev = resolve_device(config.run.device)
    data = load_data(config, dev, validation=False)
    model = build_model(config, data.num_classes).to(dev)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit model {config.model.name!r}: {str(exc).splitlines()[0]}") from None
    if ckpt.get("mask") is not None:  # a one-shot run's training checkpoint holds no mask
        Mask.from_state_dict(ckpt["mask"]).check(model)
    r = evaluate(model, data.test.batches(config.data.eval_batch_size))
    table = sparsity_table(model, prunable_parameters(model, types=tuple(config.prune.types), biases=config.prune.biases),
                           eps=config.prune.eps, label="prunable weights")
    return {
        "checkpoint": str(path),
        "format": ckpt.get("format", "unknown"),
        "model": config.model.name,
        "dataset": config.data.name,
        "test_accuracy": r["accuracy"],
        "test_loss": r["loss"],
        "sparsity": table.sparsity,
        "natural_sparsity": table.natural_sparsity,
        "denominator": table.denominator,
        "table": str(table),
    }


def eval_external_checkpoint(path: str | Path, model: str, num_classes: int, model_kwargs: dict | None = None,
                             data: str | None = None, data_dir: str | None = None, device: str | None = None) -> dict:
    """Measure a checkpoint saved by other code (e.g. the HALO authors' release) and optionally evaluate it.

    Sparsity is reported over Conv2d weights (the paper's denominator) and over all parameters; the
    accuracy stored in the file, if any, is reported as such; with ``data`` the test split is evaluated.
    """
    from .measure.external import describe_external

    d = describe_external(path, model, num_classes, **(model_kwargs or {}))
    out = {k: v for k, v in d.items() if k not in ("model", "table")}
    out["table"] = str(d["table"])
    out["checkpoint"] = str(path)
    out["test_accuracy"] = None
    if data:
        dev = resolve_device(device or "auto")
        splits = load_dataset(data, data_dir).to(dev)
        if splits.num_classes != num_classes:
            raise SparsehaloError(f"dataset {data!r} has {splits.num_classes} classes, the model {num_classes}")
        r = evaluate(d["model"].to(dev), splits.test.batches(500))
        out["test_accuracy"], out["test_loss"], out["dataset"] = r["accuracy"], r["loss"], data
    return out


def energy_run(run_dir: str | Path, out: str | Path | None = None, device: str | None = None) -> dict:
    """Energy analysis of every Conv2d of a run's final model over the test set.

    For each layer: the covariance of its globally average-pooled outputs, its eigenvalues normalized
    to sum to one, and how many components reach 90% / 99% of the energy.  Writes ``energy.json`` and
    ``energy.png`` (cumulative energy against the fraction of channels) into ``out`` (default: the run).
    """
    from .measure.energy import conv_energy, energy_summary, plot_energy

    run_dir = Path(run_dir)
    state = _load(run_dir, device)
    spectra = conv_energy(state.model, state.batches())
    if not spectra:
        raise SparsehaloError(f"model {state.config.model.name!r} has no Conv2d layer to analyze")
    out = Path(out) if out else run_dir
    summary = {"run": state.config.name, "split": "test", "layers": energy_summary(spectra),
               "spectra": {k: v.tolist() for k, v in spectra.items()}}
    write_json(paths.energy_json(out), summary)
    plot_energy(spectra, paths.energy_png(out), title=f"{state.config.name}: energy of pooled conv outputs (test set)")
    summary["plot"] = str(paths.energy_png(out))
    return summary
