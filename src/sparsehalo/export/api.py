"""Export trained or pruned networks: a compact sparse file, a plain dense state dict, an ONNX graph.

:func:`export_sparse` writes every tensor of the model's state dict to a safetensors file, each
Conv2d/Linear weight with enough zeros in its smallest encoding (:mod:`.encodings`, :mod:`.container`);
:func:`load_sparse` reads it back, into a given model or one rebuilt from the stored config.
:func:`export_dense` writes a plain ``torch.save`` state dict, :func:`.onnx.export_onnx` an ONNX file.  :func:`export_run` exports a run
directory's final or pruned weights, finding its files through :mod:`sparsehalo.paths`.
"""

from __future__ import annotations

import contextlib
import io as _stdio
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from .. import paths
from ..config import from_dict
from ..data import DATASETS, normalize_name
from ..errors import CheckpointError, ConfigError, SparsehaloError
from ..io import load_torch, read_json, save_torch
from ..measure import count_nonzero
from ..imports import is_import_path
from ..selection import aliases, prunable_parameters, unwrap
from ..training import build_model, config_of, load_data
from .container import MAX_ELEMENTS, encode_state, read_metadata, read_sparse_state
from .onnx import export_onnx, require_onnx
from .slim import find_slim, write_slim
from .writing import dense_fp32_bytes as _dense_fp32_bytes, report as _report, write_unless_other as _write_unless_other

FORMATS = ("sparse", "dense", "onnx", "slim")


def export_sparse(model: nn.Module, path: str | Path, *, values_dtype: torch.dtype = torch.float32, metadata: dict | None = None,
                  overwrite: bool = True) -> dict:
    """Write ``model``'s state dict in the compact sparse format (atomically).

    Args:
        model: the network; its Conv2d/Linear weights with at least ``COMPACT_MIN_ZEROS`` (10%)
            zeros are stored in the smallest of bitmask, CSR, delta indices and dense; the rest dense.
        path: the output file (conventionally ``*.sparse.safetensors``).
        values_dtype: dtype of the stored non-zero values (``torch.float16`` halves them; decoding
            casts back to the original dtype).
        metadata: extra ``{str: str}`` header entries; give ``config`` (a config JSON string) and
            ``num_classes`` so that :func:`load_sparse` can rebuild the model on its own.
        overwrite: False refuses to replace an existing ``path`` that holds other bytes (one that
            holds exactly these bytes is rewritten with them).

    Returns:
        ``{"format", "path", "dense_fp32_bytes", "file_bytes", "ratio", "values_dtype", "tensors"}``;
        ``dense_fp32_bytes`` is 4 bytes per stored entry (a plain fp32 state dict's payload),
        ``ratio`` is file bytes over that, ``tensors`` maps each name to its encoding, shape, number
        of non-zeros and payload bytes.

    Raises:
        SparsehaloError: a bad ``values_dtype`` or metadata, values that overflow ``float16``, or
            (``overwrite=False``) an existing ``path`` with other content.
    """
    path = Path(path)
    model = unwrap(model)  # names of the plain model, so the file loads into it
    state = model.state_dict()
    tied = aliases(model)
    sparse_names = {alias for n in prunable_parameters(model) for alias in (n, *tied.get(n, ()))}
    data, tensors = encode_state(state, sparse_names, values_dtype, metadata)
    _write_unless_other(path, data, overwrite)
    return _report("sparse", path, _dense_fp32_bytes(state), values_dtype=str(values_dtype).removeprefix("torch."), tensors=tensors)


def export_dense(model: nn.Module, path: str | Path, *, overwrite: bool = True) -> dict:
    """Write ``model.state_dict()`` with ``torch.save`` (atomically, with its sidecar SHA-256).

    The file loads with ``torch.load(path, weights_only=True)`` into the unmodified model class.
    ``overwrite=False`` refuses to replace an existing ``path`` that holds other bytes (one that holds
    exactly these bytes is rewritten with them).

    Returns:
        ``{"format", "path", "dense_fp32_bytes", "file_bytes", "ratio"}``.
    """
    path = Path(path)
    state = unwrap(model).state_dict()
    if overwrite:
        save_torch(path, state)
    else:
        buf = _stdio.BytesIO()
        torch.save(state, buf)  # the bytes save_torch writes (both save to a file object)
        _write_unless_other(path, buf.getvalue(), overwrite, checksum=True)
    return _report("dense", path, _dense_fp32_bytes(state))


def _build_from_metadata(path: Path, meta: Mapping[str, str]) -> nn.Module:
    """The model a sparse export's ``config`` / ``num_classes`` metadata describes, untrained.

    Bounded by the file: the constructor runs on the meta device first and is stopped once it has
    registered much more than the file holds; its names and shapes must then equal the file's.
    """
    shapes = {k: tuple(r.get("shape", ())) for k, r in json.loads(meta.get("encodings", "{}")).items() if isinstance(r, dict)}
    if "config" not in meta:
        raise CheckpointError(f"sparse export {str(path)!r} holds no model config; pass model= to load_sparse")
    try:
        config = from_dict(json.loads(meta["config"]))
        num_classes = int(meta["num_classes"]) if "num_classes" in meta else None
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError, ConfigError) as exc:
        raise CheckpointError(f"sparse export {str(path)!r} holds an unreadable config: {str(exc).splitlines()[0][:200]}") from None
    if num_classes is not None and num_classes <= 0:
        raise CheckpointError(f"sparse export {str(path)!r} has num_classes {num_classes}")
    if is_import_path(config.model.name):
        # Importing what a file names would run code the file chose: only the caller may do that.
        raise CheckpointError(
            f"sparse export {str(path)!r} names the model by import path {config.model.name!r}, which is never "
            "imported from a file; build the model yourself and pass model= to load_sparse"
        )
    # Build on the meta device first, with the file's own size as the budget: a crafted config that
    # asks for a huge model (ResNet of depth 180002) is stopped after a few registrations, and the
    # names and shapes it builds are compared with the file's before any real memory is allocated.
    try:
        with torch.device("meta"), _registration_budget(path, 4 * len(shapes) + 256):
            probe = build_model(config, num_classes)
        built = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    except ConfigError as exc:
        raise CheckpointError(f"sparse export {str(path)!r}: {exc}") from None
    except (NotImplementedError, RuntimeError):
        built = None  # a model whose constructor cannot run on meta: built directly, checked on load
    if built is not None and sum(math.prod(v) for v in built.values()) > MAX_ELEMENTS:
        raise CheckpointError(f"sparse export {str(path)!r} describes a model above the {MAX_ELEMENTS:,}-element limit")
    if built is not None and built != shapes:
        missing = [k for k in built if k not in shapes] or [k for k in shapes if k not in built]
        detail = f"names differ ({', '.join(missing[:3])})" if missing else next(
            f"{k} is {list(shapes[k])} in the file, {list(built[k])} in the model" for k in built if built[k] != shapes[k])
        raise CheckpointError(f"sparse export {str(path)!r}: its tensors do not match the model its config describes: {detail}")
    return build_model(config, num_classes)


@contextlib.contextmanager
def _registration_budget(path: Path, most: int):
    """Stop a model constructor after ``most`` registered parameters, buffers and submodules."""
    count = 0

    def hook(*_):
        nonlocal count
        count += 1
        if count > most:
            raise CheckpointError(f"sparse export {str(path)!r} describes a model far larger than the "
                                  f"file's tensors (stopped after {most:,} parameters, buffers and modules)")

    handles = [register(hook) for register in (register_module_parameter_registration_hook,
                                               register_module_buffer_registration_hook,
                                               register_module_module_registration_hook)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def load_sparse(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load a sparse export into ``model``, or into a model rebuilt from the stored config.

    Args:
        path: a file written by :func:`export_sparse` / :func:`export_run`.
        model: the network to load into; None rebuilds it with
            :func:`sparsehalo.training.build_model` from the ``config`` and ``num_classes`` metadata.

    Returns:
        The model with the decoded weights loaded strictly, in eval mode.

    Raises:
        CheckpointError: invalid file, no stored config when ``model`` is None, or tensors that do
            not match the model.
    """
    path = Path(path)
    if model is None:
        model = _build_from_metadata(path, read_metadata(path))
    model = unwrap(model)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, _ = read_sparse_state(path, expected=expected, max_elements=max(MAX_ELEMENTS, sum(math.prod(s) for s in expected.values())))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"sparse export {str(path)!r} does not fit the model: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _num_classes(config, ckpt: Mapping) -> int | None:
    """The number of classes the run built its model with: the checkpoint's record, else (older
    checkpoints) the registered dataset's; None for a user's dataset that did not say."""
    if isinstance(ckpt.get("num_classes"), int) and not isinstance(ckpt["num_classes"], bool):
        return ckpt["num_classes"]
    if is_import_path(config.data.name):
        return None
    key = normalize_name(config.data.name)
    if key not in DATASETS:
        raise SparsehaloError(f"unknown dataset {config.data.name!r} in the run's config")
    return DATASETS[key].num_classes


def _run_config_hash(run_dir: Path) -> str | None:
    """The hash of ``run_dir``'s ``config.json``; None when it has none."""
    path = paths.config(run_dir)
    if not path.is_file():
        return None
    raw = read_json(path, "run config")
    try:
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return from_dict(raw).hash()
    except (ConfigError, TypeError, ValueError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"{str(path)!r} is not a readable sparsehalo config ({first}); restore it from the run") from None


def check_run(run_dir: str | Path, ckpt: dict, source: str | Path) -> None:
    """Check that ``ckpt`` (read from ``source``, a file of ``run_dir``) belongs to the run (used by
    every command that reads a run: prune, sweep, export, eval).

    The config stored in the checkpoint must hash like the run's ``config.json`` (a run directory
    without one is not checked).  Warns (``UserWarning``, one line) when the run is unfinished (no
    ``summary.json``) or its weights are not finite (the run diverged).

    Raises:
        CheckpointError: the checkpoint belongs to another config.
        ConfigError: ``config.json`` is unreadable.
    """
    run_dir, source = Path(run_dir), Path(source)
    want = _run_config_hash(run_dir)
    config = config_of(ckpt, source)
    if want is not None:
        have = config.hash()
        if have != want:
            raise CheckpointError(f"{str(source)!r} belongs to another config (hash {have}) than {str(paths.config(run_dir))!r} "
                                  f"(hash {want}); restore the run's files, or use the run that wrote it")
    model = ckpt.get("model")
    if isinstance(model, dict) and any(isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
                                       for t in model.values()):
        warnings.warn(f"{str(source)!r} holds non-finite weights: the run diverged", stacklevel=3)
    if not paths.summary(run_dir).exists():
        epoch = ckpt.get("epoch")
        done = (f" (checkpoint after epoch {epoch} of {config.train.epochs})"
                if isinstance(epoch, int) and not isinstance(epoch, bool) else "")
        warnings.warn(f"{str(run_dir)!r} is unfinished{done}: it has no summary.json (interrupted or diverged), so these "
                      "are not its final weights; re-run its `sparsehalo train` command to finish it", stacklevel=3)



def _scope_of(sparsity: float, path: Path) -> str:
    """The pruning scope a file of :func:`paths.pruned_checkpoints` was written with."""
    options = paths.pruned_options(sparsity, path)
    return options[0] if options else "global"


def _options_text(scope: str | None, min_density: float | None) -> str:
    """The options of ``sparsehalo prune`` / ``export`` that select a prune, as typed."""
    return (f" --scope {scope}" if scope not in (None, "global") else "") + (f" --min-density {min_density:g}" if min_density else "")


def _prune_command(root: Path, sparsity: float, scope: str | None, min_density: float | None = None) -> str:
    return f"`sparsehalo prune {root} --sparsity {paths.level_name(sparsity)}{_options_text(scope, min_density)}`"


def find_source(run_dir: str | Path, sparsity: float | None = None, scope: str | None = None, min_density: float | None = None) -> Path:
    """The checkpoint :func:`export_run` reads: the final one, or the pruned one at ``sparsity``.

    Args:
        run_dir: a run directory.
        sparsity: None for the final weights; else the level given to ``sparsehalo prune``.
        scope: the pruning scope of that prune (``"global"``, ``"layer"``).
        min_density: the ``--min-density`` of that prune.  With ``scope`` or ``min_density``, the
            prune with exactly these options (the other one at its default) is taken; with neither,
            whichever prune exists at ``sparsity``.

    Raises:
        SparsehaloError: ``scope`` / ``min_density`` without ``sparsity``, or neither while prunes
            with several options exist at ``sparsity`` (the message lists them).
        CheckpointError: no pruned checkpoint of that level (and options); names the prune command.
    """
    root = Path(run_dir)
    if sparsity is None:
        if scope is not None or min_density is not None:
            raise SparsehaloError(f"{'--scope' if scope is not None else '--min-density'} selects a pruned checkpoint; give --sparsity too")
        return paths.checkpoint(root)
    if scope is not None or min_density is not None:
        source = paths.pruned_checkpoint(root, sparsity, scope or "global", min_density)
        if not source.is_file():
            raise CheckpointError(f"{str(source)!r} not found; run {_prune_command(root, sparsity, scope, min_density)} first")
        return source
    found = paths.pruned_checkpoints(root, sparsity)
    if not found:
        source = paths.pruned_checkpoint(root, sparsity)
        raise CheckpointError(f"{str(source)!r} not found (nor a prune with other options); run {_prune_command(root, sparsity, None)} first")
    if len(found) > 1:
        options = [paths.pruned_options(sparsity, p) for p in found]
        level = paths.level_name(sparsity)
        if all(m is None for _, m in options):
            scopes = ", ".join(s for s, _ in options)
            raise SparsehaloError(f"{root} has prunes at sparsity {level} of scopes {scopes}; choose one with --scope")
        listed = ", ".join(f"{p.name} ({_options_text(s, m).strip() or 'default options'})" for p, (s, m) in zip(found, options))
        raise SparsehaloError(f"{root} has {len(found)} prunes at sparsity {level}: {listed}; choose one with --scope / --min-density (--scope global: the default options)")
    return found[0]


def export_run(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    sparsity: float | None = None,
    scope: str | None = None,
    min_density: float | None = None,
    fp16: bool = False,
    force: bool = False,
    input_shape: tuple[int, ...] | None = None,
    channels: float | None = None,
    macs: float | None = None,
) -> dict:
    """Export a run's weights: the final checkpoint, or the pruned one with ``sparsity``.

    Args:
        run_dir: a run directory.
        fmt: ``"sparse"`` (compact file, see :mod:`.container`), ``"dense"`` (plain ``torch.save``
            state dict) or ``"onnx"`` (the dense graph, see :mod:`.onnx`).
        out: output file; default :func:`paths.sparse_export` / ``dense_export`` / ``onnx_export`` of the run.
        sparsity: export the pruned checkpoint written by ``sparsehalo prune RUN_DIR --sparsity S``.
        scope, min_density: the ``--scope`` / ``--min-density`` of that prune; neither takes
            whichever exists (see :func:`find_source`).
        fp16: store the non-zero values as float16 (sparse format only).
        force: replace an existing output file with other content.  Without it, such a file is
            refused; one holding exactly the new bytes is rewritten (exporting twice is idempotent).
        input_shape: onnx: one input's shape without the batch dimension; default the run's dataset's.
        channels, macs: ``"slim"`` (:mod:`.slim`): the structured prune ``sparsehalo prune --structured``
            wrote (``scope`` its scope), exported as a plain state dict and ``model.slim.json``.

    Returns:
        The report of :func:`export_sparse` / :func:`export_dense` / :func:`.onnx.export_onnx`, plus ``source`` (the checkpoint read)
        and ``prunable_sparsity`` (zeros among Conv2d/Linear weights).

    Raises:
        SparsehaloError: bad ``fmt``, ``fp16`` with another format than sparse, ``scope`` without
            ``sparsity``, prunes with several options and no ``scope`` / ``min_density``, or an
            existing output file with other content and no ``force``.
        CheckpointError: missing or unreadable checkpoint (naming the prune command for a missing
            pruned one), a checkpoint that belongs to another config than the run's ``config.json``,
            or weights that do not fit the configured model.

    Warns:
        UserWarning: the run is unfinished or diverged (see :func:`check_run`).
    """
    if fmt not in FORMATS:
        raise SparsehaloError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fp16 and fmt != "sparse":
        raise SparsehaloError(f"--fp16 applies to --format sparse only (the {fmt} export holds fp32 weights)")
    if fmt == "onnx":
        require_onnx()  # before any file is read
    root = Path(run_dir)
    if fmt == "slim" or channels is not None or macs is not None:
        if fmt != "slim" or sparsity is not None or min_density is not None:
            raise SparsehaloError("--channels / --macs select a structured prune for --format slim (without --sparsity / --min-density)")
        source = find_slim(root, channels, macs, scope or "global")
        ckpt = load_torch(source, required=("model", "config", "architecture"))
        check_run(root, ckpt, source)
        return {**write_slim(ckpt["model"], ckpt["architecture"], Path(out) if out is not None else paths.slim_export(root), force),
                "source": str(source)}
    source = find_source(root, sparsity, scope, min_density)
    ckpt = load_torch(source, required=("model", "config"))
    check_run(root, ckpt, source)
    config = config_of(ckpt, source)
    num_classes = _num_classes(config, ckpt)
    model = build_model(config, num_classes)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(source)!r} does not fit model {config.model.name!r}: {str(exc).splitlines()[0]}") from None
    if fmt == "sparse":
        path = Path(out) if out is not None else paths.sparse_export(root)
        meta = {"config": json.dumps(config.to_dict(), separators=(",", ":")), "num_classes": str(num_classes), "source": source.name}
        if num_classes is None:
            del meta["num_classes"]
        report = export_sparse(model, path, values_dtype=torch.float16 if fp16 else torch.float32, metadata=meta, overwrite=force)
    elif fmt == "dense":
        path = Path(out) if out is not None else paths.dense_export(root)
        report = export_dense(model, path, overwrite=force)
    else:
        shape = input_shape or load_data(config, "cpu", validation=False).test.example_shape  # the data the run used
        report = export_onnx(model, Path(out) if out is not None else paths.onnx_export(root), shape, overwrite=force)
    total, nonzero = count_nonzero(prunable_parameters(model))
    report["source"] = str(source)
    report["prunable_sparsity"] = (total - nonzero) / total if total else 0.0
    return report


def format_report(report: dict) -> str:
    """A few human-readable lines for the CLI."""
    lines = [
        f"wrote {report['path']} ({report['format']}"
        + (f", {report['values_dtype']} values" if "values_dtype" in report else "")
        + (f", opset {report['opset']}, {report['input']} -> {report['output']}" if "opset" in report else "")
        + (f", architecture in {report['json']}" if "json" in report else "")
        + f") from {report.get('source', 'model')}",
        f"  {report['file_bytes']:,} bytes = {100 * report['ratio']:.2f}% of the {report['dense_fp32_bytes']:,}-byte dense fp32 payload",
    ]
    if "prunable_sparsity" in report:
        lines.append(f"  prunable weights sparsity {100 * report['prunable_sparsity']:.2f}%")
    for name, t in report.get("tensors", {}).items():
        if t["encoding"] != "dense":
            lines.append(f"  {name}: {t['encoding']}, {t['nonzero']:,}/{math.prod(t['shape']):,} non-zero, {t['bytes']:,} bytes")
    return "\n".join(lines)
