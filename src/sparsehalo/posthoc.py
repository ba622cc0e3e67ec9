"""Operations on finished runs: prune, sweep, evaluate.  The CLI commands are thin wrappers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from . import checkpoint
from .engine import CHECKPOINT, Experiment, build_model, config_of, load_run, resolve_device, test_batches
from .errors import CheckpointError, SparsehaloError
from .measure import evaluate, sparsity_table
from .data import load_dataset
from .pruning import Mask, prunable_parameters, prune

PRUNED_FORMAT = "sparsehalo-pruned-1"


def _level_name(sparsity: float) -> str:
    return f"{sparsity:g}"


def _layer_rows(table) -> list[dict]:
    return [
        {"name": r.name, "total": r.total, "nonzero": r.nonzero, "sparsity": r.sparsity}
        for r in table.rows
    ]


def prune_experiment(exp: Experiment, sparsity: float, scope: str = "global", min_density: float | None = None) -> tuple[dict, Mask]:
    """Prune ``exp.model`` in place by magnitude and measure it before and after (no fine-tuning)."""
    if not 0.0 <= sparsity < 1.0:
        raise SparsehaloError(f"--sparsity must be in [0, 1), got {sparsity}")
    before = evaluate(exp.model, test_batches(exp))
    params = exp.prunable()
    natural_before = sparsity_table(exp.model, params, eps=exp.config.prune.eps, label="prunable weights")
    mask = prune(exp.model, sparsity, scope=scope, params=params, min_density=min_density)
    after = evaluate(exp.model, test_batches(exp))
    table = sparsity_table(exp.model, params, eps=exp.config.prune.eps, label="prunable weights")
    summary = {
        "run": exp.config.name,
        "config_hash": exp.config.hash(),
        "scope": scope,
        "min_density": min_density,
        "fine_tuned": False,
        "test_accuracy_before": before["accuracy"],
        "test_accuracy_after": after["accuracy"],
        "test_loss_before": before["loss"],
        "test_loss_after": after["loss"],
        "sparsity_requested": sparsity,
        "sparsity_measured": table.sparsity,
        "natural_sparsity_before": natural_before.natural_sparsity,
        "natural_eps": exp.config.prune.eps,
        "denominator": table.denominator,
        "prunable_total": table.total,
        "prunable_nonzero": table.nonzero,
        "parameters_total": sum(p.numel() for p in exp.model.parameters()),
        "parameters_nonzero": int(sum(int((p != 0).sum()) for p in exp.model.parameters())),
        "empty_layers": list(mask.empty_layers),
        "layers": _layer_rows(table),
    }
    return summary, mask


def prune_run(run_dir: str | Path, sparsity: float, scope: str = "global", min_density: float | None = None, device: str | None = None) -> dict:
    """Prune a finished run's final weights; writes ``pruned/sparsity-S.pt`` and ``.json``."""
    run_dir = Path(run_dir)
    exp, _ = load_run(run_dir, resolve_device(device) if device else None)
    summary, mask = prune_experiment(exp, sparsity, scope, min_density)
    out = run_dir / "pruned"
    stem = f"sparsity-{_level_name(sparsity)}" + ("" if scope == "global" else f"-{scope}")
    checkpoint.save(
        out / f"{stem}.pt",
        {
            "format": PRUNED_FORMAT,
            "config": json.dumps(exp.config.to_dict()),
            "model": exp.model.state_dict(),
            "mask": mask.state_dict(),
            "sparsity_requested": sparsity,
            "scope": scope,
        },
    )
    summary["checkpoint"] = str(out / f"{stem}.pt")
    checkpoint.write_json(out / f"{stem}.json", summary)
    return summary


def sweep_run(run_dir: str | Path, sparsities: list[float], scope: str = "global", device: str | None = None) -> list[dict]:
    """Accuracy after pruning the final weights at each sparsity; writes ``sweep.csv`` and ``sweep.png``."""
    run_dir = Path(run_dir)
    exp, _ = load_run(run_dir, resolve_device(device) if device else None)
    saved = {n: p.detach().clone() for n, p in exp.model.state_dict().items()}
    rows = []
    for s in sparsities:
        exp.model.load_state_dict(saved)
        summary, _ = prune_experiment(exp, s, scope)
        rows.append(
            {
                "sparsity_requested": s,
                "sparsity_measured": summary["sparsity_measured"],
                "test_accuracy": summary["test_accuracy_after"],
                "test_accuracy_dense": summary["test_accuracy_before"],
                "prunable_total": summary["prunable_total"],
                "prunable_nonzero": summary["prunable_nonzero"],
            }
        )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    checkpoint.atomic_write_text(run_dir / "sweep.csv", buf.getvalue())
    plot_sweep(rows, run_dir / "sweep.png", title=f"{exp.config.name} ({exp.config.model.name}, {scope} magnitude pruning)", denominator=summary["denominator"])
    return rows


def plot_sweep(rows: list[dict], path: Path, title: str, denominator: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    checkpoint.atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def eval_checkpoint(path: str | Path, device: str | None = None, data_dir: str | None = None) -> dict:
    """Evaluate a sparsehalo checkpoint (training or pruned) on its dataset's test split."""
    path = Path(path)
    ckpt = checkpoint.load(path, required=("model", "config"))
    config = config_of(ckpt, path)
    if data_dir:
        config.run.data_dir = data_dir
    if device:
        config.run.device = device
    dev = resolve_device(config.run.device)
    data = load_dataset(config.data.name, config.run.data_dir).to(dev)
    model = build_model(config, data.num_classes).to(dev)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit model {config.model.name!r}: {str(exc).splitlines()[0]}") from None
    if "mask" in ckpt:
        mask = Mask.from_state_dict(ckpt["mask"])
        mask.check(model)
    r = evaluate(model, data.test.batches(config.data.eval_batch_size))
    table = sparsity_table(model, prunable_parameters(model, types=tuple(config.prune.types), biases=config.prune.biases), eps=config.prune.eps, label="prunable weights")
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


def eval_external_checkpoint(
    path: str | Path,
    model: str,
    num_classes: int,
    model_kwargs: dict | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    device: str | None = None,
) -> dict:
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
        net = d["model"].to(dev)
        r = evaluate(net, splits.test.batches(500))
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
    exp, _ = load_run(run_dir, resolve_device(device) if device else None)
    spectra = conv_energy(exp.model, test_batches(exp))
    if not spectra:
        raise SparsehaloError(f"model {exp.config.model.name!r} has no Conv2d layer to analyze")
    out = Path(out) if out else run_dir
    summary = {"run": exp.config.name, "split": "test", "layers": energy_summary(spectra),
               "spectra": {k: v.tolist() for k, v in spectra.items()}}
    checkpoint.write_json(out / "energy.json", summary)
    plot_energy(spectra, out / "energy.png", title=f"{exp.config.name}: energy of pooled conv outputs (test set)")
    summary["plot"] = str(out / "energy.png")
    return summary
