"""Tests for sparsehalo.data.augment: batched random crop and flip, and its use in batching."""

from __future__ import annotations

import pytest
import torch

from sparsehalo.data import ArrayDataset
from sparsehalo.data.augment import crop_flip, random_crop_flip


def crop_flip_ref(img: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """Slow reference for one image [C, H, W]: copy the window pixel by pixel."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=img.dtype)
    padded[:, padding : padding + h, padding : padding + w] = img
    out = torch.empty_like(img)
    for i in range(h):
        for j in range(w):
            out[:, i, j] = padded[:, top + i, left + (w - 1 - j if flip else j)]
    return out


def rand_images(b=8, c=3, h=32, w=32, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_crop_flip_matches_reference():
    x = rand_images(6, 2, 7, 5)
    top = torch.tensor([0, 8, 3, 5, 8, 0])
    left = torch.tensor([0, 8, 6, 1, 0, 4])
    flip = torch.tensor([False, True, True, False, False, True])
    out = crop_flip(x, top, left, flip, padding=4)
    for b in range(6):
        assert torch.equal(out[b], crop_flip_ref(x[b], int(top[b]), int(left[b]), bool(flip[b]), 4))
    with pytest.raises(ValueError, match="offsets"):
        crop_flip(x, top + 1, left, flip, padding=4)


def identify(out_img, img, padding):
    """All (top, left, flip) whose window of the zero-padded image equals out_img.

    Uses slicing (not the pixel loop above) so searching all windows of many images stays fast; it
    is still independent of the gather-based implementation.
    """
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=img.dtype)
    padded[:, padding : padding + h, padding : padding + w] = img
    found = []
    for t in range(2 * padding + 1):
        for l in range(2 * padding + 1):
            window = padded[:, t : t + h, l : l + w]
            found += [(t, l, f) for f in (False, True) if torch.equal(out_img, window.flip(-1) if f else window)]
    return found


def test_random_crop_flip_identity_and_mirror():
    x = rand_images()
    assert torch.equal(random_crop_flip(x, torch.Generator().manual_seed(0), padding=0, flip=False), x)

    x = rand_images(64)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    same = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(a != b for a, b in zip(flipped, same))  # each is exactly one of the two
    assert 0 < sum(flipped) < 64


def test_random_crop_flip_windows_and_determinism():
    x = rand_images(256, 3, 8, 8, seed=2)
    out = random_crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    assert out.shape == x.shape and out.dtype == x.dtype
    found = []
    for b in range(0, 256):
        matches = identify(out[b], x[b], 4)
        # Random pixels make the window unique, except fully-padded crops which don't occur here.
        assert len(matches) == 1, (b, matches)
        found.append(matches[0])
    assert {t for t, _, _ in found} == set(range(9)) and {l for _, l, _ in found} == set(range(9))
    assert {f for _, _, f in found} == {False, True}

    again = random_crop_flip(x, torch.Generator().manual_seed(3), padding=4)
    other = random_crop_flip(x, torch.Generator().manual_seed(4), padding=4)
    assert torch.equal(out, again) and not torch.equal(out, other)


def augmented_dataset(n=40, **kwargs):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ArrayDataset(images, torch.arange(n), augment=random_crop_flip, **kwargs)


def collect(ds, **kwargs):
    xs, ys = zip(*ds.batches(16, **kwargs))
    return torch.cat(xs), torch.cat(ys)


def test_batches_augmentation_is_function_of_seed_and_epoch():
    ds = augmented_dataset()
    plain = ds.with_augment(None)
    x1, y1 = collect(ds, shuffle=True, seed=1, epoch=2)
    x2, y2 = collect(ds, shuffle=True, seed=1, epoch=2)
    x3, y3 = collect(ds, shuffle=True, seed=1, epoch=3)
    _, y_plain = collect(plain, shuffle=True, seed=1, epoch=2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.equal(y1, y_plain)  # augmentation does not change the shuffle order
    # Each sample is a crop/flip of its own image.
    for i in (0, 17, 39):
        assert identify(x1[i], ds.images[int(y1[i])].float() / 255, 4)
    assert ds.to("cpu").augment is random_crop_flip and ds.subset(torch.arange(3)).augment is random_crop_flip
