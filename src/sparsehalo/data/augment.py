"""Batched data augmentation for image tensors: random crop after zero padding, random horizontal flip.

This is the standard CIFAR training augmentation (pad by 4, take a random crop of the original size,
flip left-right with probability 1/2), done for a whole batch at once with index gathers on the
batch's own device instead of a Python loop over images.  The random choices are drawn from the
``torch.Generator`` passed in, so a batch's augmentation is reproducible from the generator's state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["crop_flip", "random_crop_flip"]


def _check_batch(x: torch.Tensor, padding: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected an image batch [B, C, H, W], got {shape}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")


def crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Crop each image of a zero-padded batch at a given offset and mirror the chosen ones.

    The deterministic half of :func:`random_crop_flip`: output image ``b`` is the ``H x W`` window of
    ``x[b]`` padded by ``padding`` zeros on every side, whose top-left corner is at
    ``(top[b], left[b])`` in padded coordinates, flipped left-right when ``flip[b]`` is true.

    Args:
        x: images ``[B, C, H, W]`` (any dtype).
        top: ``[B]`` integer row offsets in ``[0, 2 * padding]``.
        left: ``[B]`` integer column offsets in ``[0, 2 * padding]``.
        flip: ``[B]`` booleans.
        padding: zero padding added on each side before cropping.

    Returns:
        A new tensor of the shape, dtype and device of ``x``.

    Raises:
        ValueError: bad shapes or offsets out of range.
    """
    _check_batch(x, padding)
    b, c, h, w = x.shape
    for name, t in (("top", top), ("left", left), ("flip", flip)):
        if t.shape != (b,):
            raise ValueError(f"{name} must have shape [{b}], got {list(t.shape)}")
    top, left = top.long(), left.long()
    if b and (int(torch.minimum(top.min(), left.min())) < 0 or int(torch.maximum(top.max(), left.max())) > 2 * padding):
        raise ValueError(f"crop offsets must lie in [0, {2 * padding}]")
    return _crop_flip(x, top, left, flip, padding)


def _crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int
) -> torch.Tensor:
    # No range check here: reading the offsets back would force a device sync on every batch, and
    # random_crop_flip only draws valid ones.
    b, c, h, w = x.shape
    top = top.to(device=x.device, dtype=torch.long)
    left = left.to(device=x.device, dtype=torch.long)
    flip = flip.to(device=x.device, dtype=torch.bool)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    # Source row/column in the padded image of every output row/column, per image.  Flipping just
    # reverses the column order inside the crop window, so it costs nothing beyond the gather.
    rows = top[:, None] + torch.arange(h, device=x.device)  # [B, H]
    cols_fwd = torch.arange(w, device=x.device)
    cols = left[:, None] + torch.where(flip[:, None], cols_fwd.flip(0), cols_fwd)  # [B, W]
    wp = padded.shape[3]
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, wp))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, padding: int = 4, *, flip: bool = True
) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, for a whole batch at once.

    Each image gets its own crop offset, uniform over the ``(2 * padding + 1) ** 2`` windows of the
    original size inside the padded image, and is flipped left-right with probability 1/2.

    Args:
        x: float images ``[B, C, H, W]`` (padding adds zeros, i.e. black before normalization).
        generator: source of randomness.  The small offset/flip tensors are drawn on the generator's
            own device (normally the CPU, which gives the same numbers on every machine) and then
            moved to ``x``'s device, where the cropping happens.
        padding: zeros added on each side before cropping (0: no cropping).
        flip: whether to flip (False: crops only).

    Returns:
        The augmented batch, a new tensor of the shape, dtype and device of ``x``.  The same
        generator state always gives the same output.

    Raises:
        ValueError: ``x`` is not 4-D or ``padding`` is negative.
    """
    _check_batch(x, padding)
    b = x.shape[0]
    dev = generator.device
    # Fixed draw order (top, left, flip) so results stay reproducible across versions.
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    flips = torch.randint(0, 2, (b,), generator=generator, device=dev).bool()
    if not flip:
        flips = torch.zeros_like(flips)
    return _crop_flip(x, top, left, flips, padding)
