"""One run on several processes: ``torchrun --nproc_per_node=N -m benchmark run ...`` (or
``srun`` under Slurm) trains one run with PyTorch's DistributedDataParallel.

- The process group comes from the launcher's variables: torchrun's ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``, else Slurm's ``SLURM_PROCID``,
  ``SLURM_NTASKS``, ``SLURM_LOCALID`` (the master is the job's first node). NCCL on GPUs, gloo
  on CPU. One process (no variables) is today's single-process run, untouched.
- The global batch stays ``train.batch_size`` = P x K (the paper's 64): every process draws the
  same global batch from the P x K sampler (same seed), augments it the same way, and takes a
  block of whole identities, P / N of them with their K images each (``shard``). Identities are
  relabelled from the sorted pids, the same in every process.
- Triplet mining (``distributed.triplet``): ``global`` (default) gathers the features of the
  whole batch from every process (with their gradients) and mines over all of it, as one
  process would; ``local`` mines within each process's own identities (positives are always
  local; negatives then come from P / N identities only: a weaker triplet loss).
- BatchNorm normalises each process's block on its own unless ``distributed.sync_bn`` (CUDA
  only: PyTorch's SyncBatchNorm), so N processes equal one process that normalises each
  block separately; the record says which.
- Checkpoints and the record are written by rank 0 only; every process resumes from the same
  checkpoint (the folder must be shared, as on a cluster's file system). Evaluation embeds a
  shard of the images in each process and gathers the features on rank 0, which computes the
  metrics and writes the record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

from benchmark.core.errors import UserError


@dataclass(frozen=True)
class Dist:
    """This process's place: rank, number of processes, local rank, backend (None: alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    launcher: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


_CURRENT = Dist()


def current() -> Dist:
    return _CURRENT


def _first_host(nodelist: str) -> str:
    """The first host of a Slurm node list: 'gpu[03-05,07],cpu1' -> 'gpu03'."""
    m = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        return nodelist
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def from_env(env: dict[str, str] | None = None) -> Dist:
    """The process's place from torchrun's or Slurm's variables (single process otherwise)."""
    env = dict(os.environ if env is None else env)
    if "WORLD_SIZE" in env and "RANK" in env:
        world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        local = int(env.get("LOCAL_RANK", rank))
        launcher = "torchrun"
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        world, rank = int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"])
        local = int(env.get("SLURM_LOCALID", "0"))
        launcher = "srun"
    else:
        return Dist()
    if not 0 <= rank < world:
        raise UserError(f"rank {rank} is outside the world size {world} ({launcher} variables)")
    return Dist(rank, world, local, None, launcher)


def init(device_name: str) -> tuple[Dist, str]:
    """Join the process group the launcher set up; returns this process's place and the device
    name it should use (``cuda:<local rank>`` on GPUs)."""
    global _CURRENT
    d = from_env()
    if not d.active:
        _CURRENT = d
        return d, device_name

    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if d.launcher == "srun":  # torchrun sets these; under plain srun derive them from Slurm
        os.environ.setdefault("MASTER_ADDR", _first_host(os.environ.get("SLURM_JOB_NODELIST",
                                                                         "127.0.0.1")))
        os.environ.setdefault("MASTER_PORT",
                              str(29500 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000))
        os.environ.setdefault("RANK", str(d.rank))
        os.environ.setdefault("WORLD_SIZE", str(d.world))
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
        device_name = f"cuda:{d.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=d.rank,
                                world_size=d.world)
    _CURRENT = Dist(d.rank, d.world, d.local_rank, backend, d.launcher)
    return _CURRENT, device_name


def set_current(d: Dist) -> None:
    """Set this process's place (tests that start their own process group)."""
    global _CURRENT
    _CURRENT = d


def finish() -> None:
    global _CURRENT
    if _CURRENT.active:

        if dist.is_initialized():
            dist.destroy_process_group()
    _CURRENT = Dist()


def check_batch(cfg: dict[str, Any], d: Dist | None = None) -> None:
    """P identities must split into whole blocks over the processes (before any work)."""
    d = d or _CURRENT
    if not d.active:
        return
    k = int(cfg["train"]["num_instances"])
    p = int(cfg["train"]["batch_size"]) // k
    if p % d.world:
        raise UserError(f"{d.world} processes: the P={p} identities of a batch "
                        f"(train.batch_size {cfg['train']['batch_size']} / K={k}) do not split "
                        f"into whole identities per process; use a world size dividing {p}, or "
                        f"--set train.batch_size={k * d.world * max(1, p // d.world)}")
    if cfg["distributed"]["sync_bn"] and not torch.cuda.is_available():
        raise UserError("distributed.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm); on CPU "
                        "each process normalises its own block")


def shard(batch_idx: np.ndarray, k: int, d: Dist | None = None) -> np.ndarray:
    """This process's block of a global P x K batch (K consecutive rows per identity, as the
    sampler yields them): identities [rank * P / N, (rank + 1) * P / N), whole."""
    d = d or _CURRENT
    if not d.active:
        return batch_idx
    p = len(batch_idx) // k
    per = p // d.world
    return batch_idx[d.rank * per * k : (d.rank + 1) * per * k]


def gather_features(features: torch.Tensor, labels: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch's features (with gradients to every process's own rows) and labels, in
    rank order; the inputs themselves when alone.
    Processes may hold different numbers of rows (e.g. FTWA-B's twins of its HR images): the
    rows are padded to the largest count for the exchange and the padding dropped."""
    d = _CURRENT
    if not d.active:
        return features, labels

    n = torch.tensor([features.shape[0]], device=features.device)
    counts = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(counts, n)
    sizes = [int(c) for c in counts]
    most = max(sizes)
    pad = most - features.shape[0]
    f = torch.nn.functional.pad(features, (0, 0, 0, pad)) if pad else features
    y = torch.nn.functional.pad(labels, (0, pad), value=-1) if pad else labels
    feats = dist_fn.all_gather(f.contiguous())
    parts = [torch.empty_like(y) for _ in range(d.world)]
    dist.all_gather(parts, y.contiguous())
    return (torch.cat([t[:k] for t, k in zip(feats, sizes)]),
            torch.cat([t[:k] for t, k in zip(parts, sizes)]))


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the processes (epoch losses for the history)."""
    d = _CURRENT
    if not d.active or not values:
        return values

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if d.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / d.world for k, v in zip(keys, t.cpu().tolist())}


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Average the gradients of ``optimizer``'s parameters over the processes (what DDP does for
    the re-id stage), for a stage that steps its own optimisers (a teacher, an SR network) on
    each process's block of the batch; nothing on one process."""
    if not current().active:
        return
    world = float(dist.get_world_size())
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(world)


def barrier() -> None:
    if _CURRENT.active:

        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` in every process."""
    if not _CURRENT.active:
        return obj

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(part: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor] | None:
    """Rank 0: the full (count, ...) tensors from each process's strided shard
    (rows rank, rank + N, ...); None elsewhere."""
    d = _CURRENT
    if not d.active:
        return part

    got: list[Any] = [None] * d.world if d.is_main else None  # type: ignore[assignment]
    dist.gather_object({k: v.cpu() for k, v in part.items()}, got, dst=0)
    if not d.is_main:
        return None
    out = {}
    for key in got[0]:
        first = got[0][key]
        full = first.new_empty((count, *first.shape[1:]))
        for r, shard_part in enumerate(got):
            full[r::d.world] = shard_part[key]
        out[key] = full
    return out


def record_block(cfg: dict[str, Any], d: Dist | None = None,
                 method_cls: Any = None) -> dict[str, Any]:
    """What the record's environment says about scaling."""
    d = d or _CURRENT
    gathers = getattr(method_cls, "triplet_under_ddp", "gathered") == "gathered"
    if not d.active:
        mining = "single process"
    elif cfg["distributed"]["triplet"] == "global" and gathers:
        mining = "global: over the whole batch, features gathered from every process"
    else:
        mining = ("per process: within each process's identities"
                  + ("" if gathers else f" ({getattr(method_cls, 'name', 'this method')} mines "
                     "per process whatever distributed.triplet says)"))
    bs = int(cfg["train"]["batch_size"])
    return {
        "world_size": d.world, "launcher": d.launcher, "backend": d.backend,
        "global_batch": bs, "per_process_batch": bs // d.world,
        "lr_scaling": "none: the global batch stays train.batch_size, so the learning rate "
                      "is the config's",
        "identities_per_process": (bs // int(cfg["train"]["num_instances"])) // d.world,
        "triplet_mining": mining,
        "batchnorm": ("SyncBatchNorm over all processes" if d.active and
                      cfg["distributed"]["sync_bn"] else "per process" if d.active
                      else "single process"),
    }
