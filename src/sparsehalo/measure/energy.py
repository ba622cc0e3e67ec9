"""Energy spectra of convolutional feature maps: how many directions carry a layer's output.

For every ``Conv2d`` the output is globally average-pooled over height and width, giving one
``C``-vector per example.  The covariance of those vectors over a data set is eigendecomposed; its
eigenvalues, sorted in descending order and normalized to sum to 1, are the layer's *energy
spectrum*.  A layer whose energy is concentrated in a few components uses few effective channels.

This corrects the analysis in the HALO authors' release, which read one spatial position of the
feature map instead of pooling over all of them.

The covariance is accumulated in one pass without keeping the activations: per layer the sums of
``x`` and ``x x^T`` (float64) and the count, then ``C = E[x x^T] - E[x] E[x]^T``.  To keep that
subtraction accurate when the mean is large compared with the spread, every vector is first shifted
by the mean of the first batch (a constant shift leaves the covariance unchanged).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write_bytes
from ..errors import SparsehaloError

DEFAULT_LEVELS: tuple[float, ...] = (0.90, 0.99)


class _Moments:
    """Running first and second moments of pooled conv outputs for one layer."""

    def __init__(self) -> None:
        self.shift: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        """Add a ``[B, C]`` batch of pooled activations (any float dtype, any device)."""
        if x.shape[0] == 0:
            return
        # MPS has no float64: accumulate such batches on the CPU (they are only B x C).
        if x.device.type == "mps":
            x = x.cpu()
        x = x.to(torch.float64)
        if self.shift is None:
            self.shift = x.mean(dim=0)
            self.sum = torch.zeros_like(self.shift)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
        x = x - self.shift
        self.sum += x.sum(dim=0)
        self.outer += x.T @ x
        self.count += x.shape[0]

    def covariance(self) -> torch.Tensor:
        """Population covariance ``E[x x^T] - E[x] E[x]^T`` (normalization cancels in the spectrum)."""
        mean = self.sum / self.count
        cov = self.outer / self.count - torch.outer(mean, mean)
        # Symmetrize so round-off cannot make eigvalsh see an asymmetric matrix.
        return (cov + cov.T) / 2


def normalized_spectrum(cov: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a covariance matrix, descending, clipped at 0 and normalized to sum 1.

    Negative eigenvalues of a covariance can only come from round-off, hence the clipping.  A zero
    matrix (a layer whose output is constant, e.g. fully pruned) gives all zeros rather than NaN.
    """
    eig = torch.linalg.eigvalsh(cov.to(torch.float64)).flip(0).clamp_min(0.0)
    total = eig.sum()
    return eig / total if total > 0 else eig


def conv_energy(
    model: nn.Module, batches: Iterable, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """Energy spectrum of the globally average-pooled output of every ``Conv2d`` in ``model``.

    Runs in eval mode (BatchNorm uses its running statistics, dropout is off) under ``torch.no_grad``;
    the hooks are removed and every module's previous train/eval mode restored afterwards, also when
    an error interrupts the pass.

    Args:
        model: the network.
        batches: iterable of input tensors or of ``(inputs, targets, ...)`` tuples (targets ignored).
        device: where to run; default the device of the model's first parameter (CPU if none).

    Returns:
        ``{conv module name: float64 CPU tensor [C]}``: normalized eigenvalues in descending order,
        in ``model.named_modules()`` order.

    Raises:
        SparsehaloError: if the model has no Conv2d or ``batches`` holds no examples.  A Conv2d that
            never runs in ``forward`` is left out of the result with a warning.
    """
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SparsehaloError("conv_energy: the model has no Conv2d layer")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)

    moments = {name: _Moments() for name, _ in convs}

    def hook_for(name: str):
        def hook(module, inputs, output):
            # Unbatched [C, H, W] calls are one example.
            out = output if output.dim() == 4 else output.unsqueeze(0)
            moments[name].add(out.mean(dim=(2, 3)))

        return hook

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook_for(name)) for name, m in convs]
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x.to(device, non_blocking=True))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training

    if all(mom.count == 0 for mom in moments.values()):
        raise SparsehaloError("conv_energy got no examples")
    unused = [name for name, mom in moments.items() if mom.count == 0]
    if unused:
        # A conv defined but not called in forward has no spectrum; say so rather than invent one.
        warnings.warn(f"conv_energy: {len(unused)} Conv2d never ran and are left out: {', '.join(unused[:5])}",
                      stacklevel=2)
    return {name: normalized_spectrum(mom.covariance()).cpu() for name, mom in moments.items() if mom.count}


def _level_key(level: float) -> str:
    return f"{100 * level:g}"


def components_for(spectrum: torch.Tensor, level: float) -> int:
    """Smallest number of leading components whose energy reaches ``level`` (0 for an all-zero spectrum)."""
    if float(spectrum.sum()) <= 0:
        return 0
    cum = torch.cumsum(spectrum.to(torch.float64), 0)
    # A small tolerance so that e.g. 0.5 + 0.3 + 0.1 counts as reaching 0.9 despite round-off.
    reached = torch.nonzero(cum >= level - 1e-9)
    return int(reached[0]) + 1 if len(reached) else len(spectrum)


def energy_summary(spectra: Mapping[str, torch.Tensor], levels: Sequence[float] = DEFAULT_LEVELS) -> dict:
    """Components needed per layer to reach each energy level.

    Args:
        spectra: output of :func:`conv_energy`.
        levels: energy fractions in (0, 1].

    Returns:
        ``{layer: {"channels": C, "n90": k, "frac90": k / C, "n99": ..., "frac99": ...}}`` (keys follow
        ``levels`` as percentages, e.g. 0.999 gives ``"n99.9"``).  All plain ints and floats.

    Raises:
        SparsehaloError: for a level outside (0, 1].
    """
    for level in levels:
        if not 0 < level <= 1:
            raise SparsehaloError(f"energy level {level} must be in (0, 1]")
    out = {}
    for name, spectrum in spectra.items():
        channels = len(spectrum)
        row: dict = {"channels": channels}
        for level in levels:
            k = components_for(spectrum, level)
            row[f"n{_level_key(level)}"] = k
            row[f"frac{_level_key(level)}"] = k / channels if channels else 0.0
        out[name] = row
    return out


def plot_energy(spectra: Mapping[str, torch.Tensor], path: str | Path, title: str | None = None) -> None:
    """Plot cumulative normalized energy against the fraction of channels, one line per layer.

    The point ``(k / C, sum of the k largest eigenvalues)`` is drawn for k = 0..C, so layers of
    different widths share one axis.  With many layers the lines are coloured from input to output
    and a colour bar replaces the legend.  The file format follows the suffix (PNG by default) and
    the file is written atomically.

    Raises:
        SparsehaloError: if ``spectra`` is empty or the suffix names no supported image format.
    """
    if not spectra:
        raise SparsehaloError("plot_energy got no layers")
    # Figure + Agg canvas directly: no pyplot global state, safe in threads and headless runs.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fig = Figure(figsize=(6.4, 4.8))
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise SparsehaloError(f"cannot write a plot as {fmt!r}; use one of "
                              f"{', '.join(sorted(canvas.get_supported_filetypes()))}")
    ax = fig.add_subplot()
    names = list(spectra)
    many = len(names) > 12
    cmap = colormaps["viridis"]
    for i, name in enumerate(names):
        s = spectra[name].detach().to(torch.float64).cpu()
        c = len(s)
        y = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(s, 0)]).numpy()
        x = [k / c for k in range(c + 1)]
        color = cmap(i / max(len(names) - 1, 1)) if many else None
        ax.plot(x, y, color=color, linewidth=1.0, label=None if many else f"{name} ({c})")
    for level in DEFAULT_LEVELS:
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.7)
    ax.set_xlabel("fraction of channels (leading principal components)")
    ax.set_ylabel("cumulative normalized energy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Energy of average-pooled conv outputs")
    ax.grid(True, alpha=0.3)
    if many:
        sm = ScalarMappable(norm=Normalize(0, len(names) - 1), cmap=cmap)
        fig.colorbar(sm, ax=ax, label="conv layer index (input to output)")
    else:
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format=fmt))
