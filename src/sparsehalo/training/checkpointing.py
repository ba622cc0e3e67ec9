"""Training checkpoints: what a run directory's ``checkpoint.pt`` holds, and rebuilding a run from it.

A checkpoint holds the model, the penalty's scales, the optimizer, the scheduler, the RNG state, the
metric history, the mask and method state and the config (as JSON).  It is written atomically after
every epoch and read with ``weights_only=True`` (:func:`sparsehalo.io.load_torch`), so resuming after a
kill continues bit-identically on the CPU and a malicious file cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from .. import paths
from ..config import Config, from_dict
from ..errors import CheckpointError, ConfigError
from ..io import load_torch, save_torch
from ..pruning import Mask
from .state import RunState, build

FORMAT = "sparsehalo-train-1"
#: Keys every training checkpoint has; resuming and evaluating need the rest too.
REQUIRED = ("model", "config", "epoch")
FULL = REQUIRED + ("penalty", "optimizer", "scheduler", "rng")


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: RunState, path: Path, epoch: int, history: list[dict]) -> None:
    """Write the checkpoint after ``epoch`` finished epochs."""
    save_torch(
        path,
        {
            "format": FORMAT,
            "epoch": epoch,
            "config": json.dumps(state.config.to_dict()),
            "num_classes": state.data.num_classes,
            "model": state.model.state_dict(),
            "penalty": state.penalty.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "rng": _rng_state(),
            "history": history,
            "mask": state.mask.state_dict() if state.mask is not None else None,
            "method": state.method.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        },
    )


def restore(state: RunState, ckpt: dict, optimizer: bool = True) -> None:
    """Load a training checkpoint's states into ``state`` (same config assumed).

    With ``optimizer=False`` the optimizer and schedule are left as built (used when the run resumes
    exactly at a phase boundary, where the next phase starts a fresh optimizer anyway).
    """
    state.model.load_state_dict(ckpt["model"])
    state.penalty.load_state_dict(ckpt["penalty"])
    state.method.load_state_dict(ckpt.get("method") or {})
    if ckpt.get("mask") is not None:
        mask = Mask.from_state_dict(ckpt["mask"]).to(state.device)
        mask.check(state.model)
        state.set_mask(mask)
    if optimizer:
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        state.precision()
        state.scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"])


#: what a damaged state inside a readable checkpoint raises while it is loaded
DAMAGED = (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)


def resume(state: RunState, ckpt: dict, where: Path | str = "checkpoint") -> tuple[int, list[dict]]:
    """Put ``state`` where the checkpoint left off; returns (finished epochs, metric history).

    Raises:
        CheckpointError: the checkpoint belongs to another config, or a state in it (model, optimizer,
            RNG, ...) cannot be loaded.
    """
    if config_of(ckpt, Path(where)).hash() != state.config.hash():
        raise CheckpointError(f"checkpoint {str(where)!r} belongs to another config than its run directory's config.json")
    try:
        start, history = int(ckpt["epoch"]), list(ckpt["history"])
        if not 0 <= start <= state.config.train.epochs:
            raise ValueError(f"epoch {start} outside 0..{state.config.train.epochs}")
        phase, first = state.phase_of(start)
        mid_phase = start > first
        if mid_phase and phase > 0:
            state.start_phase(phase)
        restore(state, ckpt, optimizer=mid_phase)
    except DAMAGED as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"cannot resume from {str(where)!r}: {first_line} (delete it to train from scratch)") from None
    return start, history


def config_of(ckpt: dict, where: Path) -> Config:
    """The config stored in a checkpoint."""
    try:
        return from_dict(json.loads(ckpt["config"]))
    except (TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {str(where)!r} holds an unreadable config: {exc}") from None


def load_run(run_dir: str | Path, device: torch.device | None = None, overrides: Callable[[Config], None] | None = None) -> tuple[RunState, dict]:
    """Rebuild the run state of a run directory from its checkpoint (for prune / eval / sweep)."""
    path = paths.checkpoint(Path(run_dir))
    if not path.exists() and paths.summary(Path(run_dir)).exists():
        raise CheckpointError(f"run {str(run_dir)!r} finished without keeping its checkpoint (run.keep_checkpoints = 0); "
                              "its summary.json holds the results; train the config again under another --out with "
                              "run.keep_checkpoints >= 1 for the weights")
    ckpt = load_torch(path, required=FULL)
    config = config_of(ckpt, path)
    if overrides:
        overrides(config)
    state = build(config, device)
    try:
        phase, _ = state.phase_of(max(int(ckpt["epoch"]) - 1, 0))
        if phase > 0:
            state.start_phase(phase)
        restore(state, ckpt)
    except DAMAGED as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match its config: {str(exc).splitlines()[0]}") from None
    return state, ckpt
