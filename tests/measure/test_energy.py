"""Energy spectra of pooled conv outputs: analytic cases, streaming vs direct covariance, hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsehalo.measure.energy import components_for, conv_energy, energy_summary, normalized_spectrum, plot_energy
from sparsehalo.errors import SparsehaloError


def one_conv(weights: list[float], cin: int) -> nn.Sequential:
    """A 1x1 conv whose output channel i is weights[i] times input channel (i % cin), no bias."""
    conv = nn.Conv2d(cin, len(weights), 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for i, w in enumerate(weights):
            conv.weight[i, i % cin] = w
    return nn.Sequential(conv)


def test_copied_channels_have_one_component():
    model = one_conv([1.0, 1.0], cin=1)  # two exact copies of one channel
    torch.manual_seed(0)
    x = torch.randn(10, 1, 4, 4)
    spectrum = conv_energy(model, [x[:6], x[6:]])["0"]
    assert spectrum.dtype == torch.float64
    assert spectrum.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert (spectrum >= 0).all()


def test_independent_channels_give_their_variances():
    # Inputs constant over H, W; the per-example channel values are orthogonal zero-mean +-1 columns,
    # so the pooled covariance is exactly diag(w^2) = diag(1, 4, 9) (x 3/4 for the population form).
    z = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) + torch.tensor([5.0, -3.0, 0.5])
    x = z[:, :, None, None].expand(4, 3, 5, 5).contiguous()
    model = one_conv([1.0, 2.0, 3.0], cin=3)
    spectrum = conv_energy(model, [(x[:1], None), (x[1:], None)])["0"]
    assert spectrum.tolist() == pytest.approx([9 / 14, 4 / 14, 1 / 14], abs=1e-12)


def test_pools_over_the_whole_map_not_one_pixel():
    # Only pixel (1, 1) varies across examples; pooling must see it, reading pixel (0, 0) would not.
    x = torch.zeros(6, 1, 3, 3)
    x[:, 0, 1, 1] = torch.arange(6.0)
    spectrum = conv_energy(one_conv([1.0, 2.0], cin=1), [x])["0"]
    assert spectrum.tolist() == pytest.approx([1.0, 0.0], abs=1e-12)


def test_streaming_equals_direct_covariance_and_restores_state():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2), nn.Dropout(0.5)
    )
    with torch.no_grad():
        model[0].bias.add_(50.0)  # a large mean stresses E[xx^T] - E[x]E[x]^T
        model[1].running_mean.normal_()
    x = torch.randn(16, 3, 8, 8)
    sizes = [5, 3, 7, 1]
    batches = [(chunk, torch.zeros(len(chunk))) for chunk in x.split(sizes)]
    model.train()
    model[1].eval()  # a mixed mode must come back exactly
    bn_before = model[1].running_mean.clone()
    spectra = conv_energy(model, batches)

    assert list(spectra) == ["0", "3"]
    model.eval()
    with torch.no_grad():
        # The same batches as conv_energy saw: float32 convolutions may round differently for another
        # batch size, and that (not the float64 algebra under test) would dominate the difference.
        h0 = torch.cat([model[0](chunk) for chunk in x.split(sizes)])
        h3 = torch.cat([model[3](model[2](model[1](model[0](chunk)))) for chunk in x.split(sizes)])
    for name, h in (("0", h0), ("3", h3)):
        pooled = h.mean(dim=(2, 3)).double()
        expected = normalized_spectrum(torch.cov(pooled.T))
        assert spectra[name].shape == (h.shape[1],)
        # Two float64 routes to one spectrum (shifted streaming moments against torch.cov, then the
        # symmetric eigensolver of whichever LAPACK is installed): by Weyl's inequality each
        # eigenvalue moves by at most ||dC||_2, a few ulps of ||C|| per entry for these 6x6 and 5x5
        # matrices, i.e. ~1e-15 after normalization.  1e-9 leaves six orders of magnitude for other
        # eigensolvers and still catches a wrong covariance (errors of order 1e-3 and up).
        assert torch.allclose(spectra[name], expected, rtol=0, atol=1e-9)
        assert spectra[name].sum().item() == pytest.approx(1.0)
        assert (spectra[name][:-1] >= spectra[name][1:]).all()

    model.train()
    model[1].eval()
    conv_energy(model, batches)
    assert [m.training for m in model] == [True, False, True, True, True]
    assert torch.equal(model[1].running_mean, bn_before)  # ran in eval mode
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_and_mode_restored_on_error():
    model = one_conv([1.0], cin=1)
    model.train()

    def bad_batches():
        yield torch.randn(2, 1, 3, 3)
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError):
        conv_energy(model, bad_batches())
    assert model.training and not model[0]._forward_hooks


def test_errors():
    with pytest.raises(SparsehaloError):
        conv_energy(nn.Sequential(nn.Linear(2, 2)), [torch.randn(1, 2)])
    with pytest.raises(SparsehaloError):
        conv_energy(one_conv([1.0], cin=1), [])


def test_zero_layer_spectrum_is_zero_not_nan():
    model = one_conv([0.0, 0.0], cin=1)  # fully pruned: constant output
    spectrum = conv_energy(model, [torch.randn(4, 1, 3, 3)])["0"]
    assert spectrum.tolist() == [0.0, 0.0]
    assert energy_summary({"0": spectrum})["0"]["n90"] == 0


def test_summary_counts_on_known_spectrum():
    spectra = {
        "a": torch.tensor([0.5, 0.3, 0.1, 0.09, 0.01], dtype=torch.float64),
        "b": torch.tensor([1.0, 0.0, 0.0, 0.0]),
        "c": torch.full((10,), 0.1, dtype=torch.float64),
    }
    summary = energy_summary(spectra)
    assert summary["a"] == {"channels": 5, "n90": 3, "frac90": 0.6, "n99": 4, "frac99": 0.8}
    assert summary["b"] == {"channels": 4, "n90": 1, "frac90": 0.25, "n99": 1, "frac99": 0.25}
    assert summary["c"]["n90"] == 9 and summary["c"]["n99"] == 10 and summary["c"]["frac99"] == 1.0
    assert energy_summary(spectra, levels=(0.5, 0.999))["a"]["n99.9"] == 5
    assert components_for(spectra["a"], 0.5) == 1
    with pytest.raises(SparsehaloError):
        energy_summary(spectra, levels=(1.5,))


def test_plot_energy(tmp_path):
    spectra = {"conv1": torch.tensor([0.7, 0.2, 0.1]), "layer1.0.conv1": torch.tensor([0.4, 0.3, 0.2, 0.1])}
    path = tmp_path / "plots" / "energy.png"
    plot_energy(spectra, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    many = {f"l{i}": torch.tensor([0.6, 0.4]) for i in range(20)}  # colour bar instead of a legend
    plot_energy(many, tmp_path / "many.pdf")
    assert (tmp_path / "many.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["energy.png", "many.pdf", "plots"]  # no temp files
    with pytest.raises(SparsehaloError):
        plot_energy(spectra, tmp_path / "x.nope")
    with pytest.raises(SparsehaloError):
        plot_energy({}, tmp_path / "y.png")
