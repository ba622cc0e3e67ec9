"""Data-parallel training over N processes (``torchrun`` or ``sparsehalo train --nproc N``).

The same config means the same training: ``data.batch_size`` is the **global** batch.  Each optimizer
step takes global batch ``b`` of the single-process shuffle (a function of seed and epoch) and gives
rank ``r`` its ``r``-th contiguous part (``torch.tensor_split``, sizes differing by at most one).

Gradients.  With ``n_r`` examples on rank ``r`` and ``n = sum n_r`` in the global batch, rank ``r``
back-propagates ``N / n * sum_{i in r} CE_i + P(w, lambda)``.  DDP averages the network's gradients
over the N ranks, so every rank steps with

    1/N * sum_r (N / n * grad sum_{i in r} CE_i + grad P) = grad (1/n * sum_i CE_i) + grad P,

the single-process gradient of the global-mean loss plus the penalty, whatever the shard sizes.  The
penalty is not divided by N: every rank computes the same ``P`` from the same weights and scales, and
the average of N equal gradients is that gradient.  The penalty's own parameters (the scales) are not
in the DDP module; their gradients are averaged by one all-reduce per step, so the scales stay equal
on every rank even where kernels are not bitwise deterministic.  Masks, rewinds and everything a
method does at a phase start are broadcast from rank 0 afterwards.  Rank 0 alone evaluates, logs and
writes ``checkpoint.pt``, ``metrics.csv`` and ``summary.json``, and holds the run's lock.

CPU processes use gloo, CUDA ones NCCL (one GPU per process: ``cuda:LOCAL_RANK``).  BatchNorm layers
normalize over each rank's shard (on CUDA they are converted to ``SyncBatchNorm``, which normalizes
over the global batch as one process does; gloo has no SyncBatchNorm).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, SparsehaloError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``size == 1``: no distribution)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process logs and writes (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env() -> World:
    """The world ``torchrun`` describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (SINGLE if unset)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"RANK={rank} / WORLD_SIZE={size} / LOCAL_RANK={local} do not describe a process group")
    return World(rank, size, local) if size > 1 else SINGLE


def device_for(world: World, device: torch.device) -> torch.device:
    """A CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per process); other devices stay as they are."""
    if world.distributed and device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {world.local_rank}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", world.local_rank)
    return device


def init(world: World, device: torch.device) -> None:
    """Join the process group (``env://`` rendezvous: MASTER_ADDR / MASTER_PORT) once per process."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timedelta(minutes=30))
    except (RuntimeError, ValueError) as exc:
        raise SparsehaloError(f"could not join the process group ({backend}): {str(exc).splitlines()[0]}") from None


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The module the training step calls: ``model`` itself, or a DDP wrapper around it."""
    if not world.distributed:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place for the BN modules' state
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)  # buffers (BN statistics) follow rank 0's


def _flat_apply(tensors: list[torch.Tensor], op) -> None:
    """Apply a collective ``op`` to the tensors in one flat buffer per dtype (one call per dtype)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        op(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def average_(tensors: list[torch.Tensor], world: World) -> None:
    """Replace each tensor by its mean over the ranks."""
    tensors = [t for t in tensors if t is not None]
    if world.distributed and tensors:
        _flat_apply(tensors, lambda flat: (dist.all_reduce(flat), flat.div_(world.size)))


def sum_(tensors: list[torch.Tensor], world: World) -> None:
    """Replace each tensor by its sum over the ranks."""
    if world.distributed and tensors:
        _flat_apply(tensors, dist.all_reduce)


@torch.no_grad()
def broadcast_(tensors: list[torch.Tensor], world: World) -> None:
    """Give every rank rank 0's values of ``tensors`` (bool tensors included)."""
    if not world.distributed or not tensors:
        return
    as_bytes = [t.view(torch.uint8) if t.dtype == torch.bool else t for t in tensors]
    _flat_apply(as_bytes, lambda flat: dist.broadcast(flat, 0))


def agree(value, world: World):
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, 0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def check_batches(n_train: int, batch_size: int, world: World) -> None:
    """Every rank must get at least one example of every global batch.

    Raises:
        ConfigError: the batch size, or the last partial batch, is smaller than the number of processes.
    """
    if not world.distributed:
        return
    last = n_train % batch_size
    small = min(batch_size, last) if last else batch_size
    if small < world.size:
        raise ConfigError(f"data.batch_size {batch_size} over {n_train} training examples gives a batch of {small}, "
                          f"fewer than the {world.size} processes: every process needs an example of every batch")


@torch.no_grad()
def fingerprint(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per tensor, the float64 sum of its values and of their squares (on its device, no copy to the host)."""
    rows = [torch.stack([t.double().sum(), t.double().square().sum()]) if t.numel() else torch.zeros(2, dtype=torch.float64, device=t.device)
            for t in tensors]
    return torch.stack(rows).flatten() if rows else torch.zeros(0, dtype=torch.float64)


def check_same(tensors: list[torch.Tensor], world: World, what: str) -> None:
    """Raise if the ranks do not hold the same ``tensors`` (compared by :func:`fingerprint`).

    Raises:
        SparsehaloError: naming the ranks that differ from rank 0.
    """
    if not world.distributed:
        return
    mine = fingerprint(tensors).to("cuda" if dist.get_backend() == "nccl" else "cpu")
    gathered = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(gathered, mine)
    differ = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
    if differ:
        raise SparsehaloError(f"{what}: rank(s) {differ} hold other values than rank 0; a nondeterministic method or "
                              "model step changed one rank only (nothing from this epoch was saved)")
