"""Training: the run state built from a config, the one epoch loop with hooks, checkpoints, evaluation."""

from ..engine import build_model, config_of, load_run, resolve_device, train

__all__ = ["build_model", "config_of", "load_run", "resolve_device", "train"]
