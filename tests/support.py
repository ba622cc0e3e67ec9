"""Helpers shared by the tests (importable: ``pythonpath = ["tests"]`` in pyproject.toml)."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under the sibling ``../shared`` checkout.

    When it is absent the calling test is skipped with the reason, unless ``CI`` is set: CI always
    has ``../shared``, so there the test fails instead of passing silently.
    """
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {path} is missing (CI always has ../shared)")
        pytest.skip(f"needs {path} (the sibling ../shared checkout), which is absent here")
    return path


def require_extra(module: str, extra: str):
    """Import ``module`` of the optional extra ``extra``, or skip the calling test module.

    Under ``CI`` (which installs every extra) a missing module fails instead of skipping.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {module} is not importable ({exc}): install 'sparsehalo[{extra}]'")
        pytest.skip(f"needs {module}: pip install 'sparsehalo[{extra}]'", allow_module_level=True)


def run_cli(*args, cwd=ROOT, env=None, timeout=300):
    """Run the console entry point in a subprocess."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "sparsehalo.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(capsys, *args):
    """``sparsehalo ARGS`` in this process: (exit code, stdout, non-empty stderr lines)."""
    from sparsehalo.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, [line for line in err.splitlines() if line.strip()]
