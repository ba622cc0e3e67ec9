"""Operations on a finished run: prune, sweep, evaluate, energy.  The CLI commands are thin wrappers.

Every pruned measurement goes through :func:`sparsehalo.training.evaluate.pruned_report` (the one
prune-a-copy-and-measure); every file is named by :mod:`sparsehalo.paths`.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import paths
from .data import load_dataset
from .errors import CheckpointError, SparsehaloError
from .io import load_torch, new_figure, save_figure, save_torch, write_csv, write_json
from .measure import evaluate, sparsity_table
from .pruning import Mask
from .selection import prunable_parameters
from .training import build_model, config_of, load_data, load_run, resolve_device
from .training.evaluate import pruned_report

PRUNED_FORMAT = "sparsehalo-pruned-1"


def _load(run_dir: Path, device: str | None):
    return load_run(run_dir, resolve_device(device) if device else None)[0]


def _check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise SparsehaloError(f"--sparsity must be in [0, 1), got {sparsity}")


def prune_run(run_dir: str | Path, sparsity: float, scope: str = "global", min_density: float | None = None, device: str | None = None) -> dict:
    """Prune a finished run's final weights; writes ``pruned/sparsity-S[-scope].pt`` and ``.json``."""
    _check_sparsity(sparsity)
    run_dir = Path(run_dir)
    state = _load(run_dir, device)
    with pruned_report(state, sparsity, scope, min_density) as (summary, mask):
        ckpt_path = paths.pruned_checkpoint(run_dir, sparsity, scope)
        save_torch(ckpt_path, {
            "format": PRUNED_FORMAT,
            "config": json.dumps(state.config.to_dict()),
            "model": state.model.state_dict(),
            "mask": mask.state_dict(),
            "num_classes": state.data.num_classes,
            "sparsity_requested": sparsity,
            "scope": scope,
        })
    summary["checkpoint"] = str(ckpt_path)
    write_json(paths.pruned_summary(run_dir, sparsity, scope), summary)
    return summary


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


def eval_checkpoint(path: str | Path, device: str | None = None, data_dir: str | None = None) -> dict:
    """Evaluate a sparsehalo checkpoint (training or pruned) on its dataset's test split."""
    path = Path(path)
    ckpt = load_torch(path, required=("model", "config"))
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
