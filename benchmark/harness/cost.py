"""Cost of a method: parameters, MACs, inference and training throughput, peak memory.

Measured the way timm's benchmark does it: warm-up steps, device synchronisation around every
timed step, the median and spread of repeated steps, with batch size, input size, precision,
memory layout and compilation recorded. The query path (an LR image) and the gallery path (an
HR image) are measured apart: they differ for two-stream and SR methods.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.core.errors import UserError
from benchmark.harness import environment
from benchmark.harness.records import PROFILE_SCHEMA as SCHEMA
from methods import Batch, Method, StepContext, build_method


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SETTLE_WINDOW = 3  # warm-up ends when this many consecutive steps agree ...
SETTLE_SPREAD = 1.15  # ... within this ratio (slowest / fastest)
SETTLE_MAX_EXTRA = 20  # at most this many warm-up steps beyond --warmup
SETTLE_MAX_S = 60.0  # and at most this long beyond --warmup


def time_steps(step: Callable[[], Any], device: torch.device, repeats: int, warmup: int
               ) -> tuple[list[float], int]:
    """Seconds of each of ``repeats`` calls of ``step`` after untimed warm-up calls, and the
    number of warm-up calls made.

    Warm-up is at least ``warmup`` calls and goes on until the last SETTLE_WINDOW calls agree
    within SETTLE_SPREAD (bounded by SETTLE_MAX_EXTRA calls and SETTLE_MAX_S seconds): the first
    large model in a process runs slower for several steps (allocator and kernel set-up), which
    a fixed count of two did not cover. ``warmup=0`` times from the first call.
    """
    done, recent = 0, []
    extra_start = None
    while warmup > 0:
        t0 = time.perf_counter()
        step()
        _sync(device)
        recent = (recent + [time.perf_counter() - t0])[-SETTLE_WINDOW:]
        done += 1
        if done < warmup:
            continue
        if extra_start is None:
            extra_start = time.perf_counter()
        settled = len(recent) == SETTLE_WINDOW and max(recent) <= SETTLE_SPREAD * min(recent)
        if (settled or done - warmup >= SETTLE_MAX_EXTRA
                or time.perf_counter() - extra_start >= SETTLE_MAX_S):
            break
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times, done


def throughput(times: list[float], batch: int) -> dict[str, float]:
    """images/s from step times: median, quartiles (spread), best and worst."""
    per = sorted(batch / t for t in times)
    q = statistics.quantiles(per, n=4) if len(per) > 1 else [per[0]] * 3
    return {"images_per_s": statistics.median(per), "p25": q[0], "p75": q[2], "min": per[0],
            "max": per[-1], "step_s_median": statistics.median(times), "repeats": len(times)}


def count_macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates of one call (torch's FLOP counter counts 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def random_images(batch: int, size: tuple[int, int], device: torch.device,
                  channels_last: bool = False, seed: int = 0) -> torch.Tensor:
    """A seeded (batch, 3, H, W) input; what the timings run on."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=g).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def training_batch(method: Method, batch: int, k: int, x: torch.Tensor) -> Batch:
    """``x`` labelled as a P x K batch, with the sampler's LR / HR split where the method mixes."""
    labels = torch.arange(batch, device=x.device) // k
    # what the P x K sampler gives: K/2 LR and K/2 HR per identity where the method mixes
    is_lr = (torch.arange(batch, device=x.device) % k) >= (k - k // 2)
    if not method.mix_resolutions:
        is_lr = torch.zeros_like(is_lr)
    return Batch(x, labels, is_lr, torch.Generator().manual_seed(0))


def _peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"kind": "cuda max_memory_allocated",
                "bytes": int(torch.cuda.max_memory_allocated(device))}
    return {"kind": "process peak RSS (CPU; the whole process, not one step)",
            "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024}


def _measure(method: Method, cfg: dict[str, Any], device: torch.device, batch: int, amp: bool,
             channels_last: bool, compiled: bool, repeats: int, warmup: int,
             train_images: int | None = None, compile_backend: str = "inductor"
             ) -> dict[str, Any]:
    size = tuple(int(v) for v in cfg["model"]["input_size"])
    dtype = torch.bfloat16
    autocast = torch.autocast(device.type, dtype=dtype, enabled=amp)
    embed = torch.compile(method.embed, backend=compile_backend) if compiled else method.embed
    step_fn = (torch.compile(method.training_step, backend=compile_backend) if compiled
               else method.training_step)
    out: dict[str, Any] = {}
    optimizers = method.reid_optimizers(
        lambda params: torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-5))
    k = int(cfg["train"]["num_instances"])
    per_step = train_images or batch
    train_size = per_step - per_step % k or k  # whole identities of K images
    train_batch = training_batch(method, train_size, k,
                                 random_images(train_size, size, device, channels_last))

    def train_step():
        if method.manual_optimization:  # the method updates its optimisers (a discriminator's)
            with autocast:
                step_fn(train_batch, StepContext(optimizers, 0, device, lambda loss, name: None))
            return
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = step_fn(train_batch)["loss"]
        loss.backward()
        optimizer.step()

    if warmup > 0:
        # One untimed training step first: it brings the process (allocator, kernels) to the
        # state the rest of a profile runs in. Without it the first method profiled in a process
        # measured ~15 % slower inference than the same network profiled second.
        method.train()
        train_step()
    method.eval()
    for path, lr in (("query", True), ("gallery", False)):
        x = random_images(batch, size, device, channels_last)
        flags = torch.full((batch,), lr, dtype=torch.bool, device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def infer(x=x, flags=flags):
            with torch.no_grad(), autocast:
                return embed(x, flags)

        times, warmed = time_steps(infer, device, repeats, warmup)
        out[path] = throughput(times, batch) | {"warmup_steps": warmed}
        out[path]["peak_memory"] = _peak_memory(device)
    method.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, warmed = time_steps(train_step, device, repeats, warmup)
    out["train"] = throughput(times, len(train_batch.labels)) | {"warmup_steps": warmed}
    out["train"]["peak_memory"] = _peak_memory(device)
    return out


def _load_block(device, load_start: dict[str, Any], cpu_start) -> dict[str, Any]:
    return {"start": load_start, "end": environment.machine_load(device),
            "other_processes_cores": environment.others_since(cpu_start),
            "note": "other_processes_cores: how many CPU cores other processes kept busy on "
                    "average while this method was profiled (/proc/stat less this process's "
                    "own CPU time); near 0 means an idle machine, and above about 0.2 the "
                    "images/s are low. The 1-minute load averages count this process's own "
                    "threads too, and under --method all lag behind the previous method's."}


def profile_method(name: str, cfg: dict[str, Any], device_name: str = "auto",
                   batch_size: int = 8, amp: bool = False, channels_last: bool = False,
                   compiled: bool = False, repeats: int = 5, warmup: int = 2,
                   num_classes: int = 751, train_batch_size: int | None = None,
                   compile_backend: str = "inductor") -> dict[str, Any]:
    """Profile one method at the config's input size; returns a JSON-ready record.

    ``train_batch_size``: the training step's batch when it differs from the inference one
    (None: the same). On CUDA an out-of-memory batch size is halved and retried (each attempt
    recorded; the training batch with it).
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise UserError("--batch-size and --repeats must be >= 1 and --warmup >= 0")
    device = environment.resolve_device(device_name)
    load_start = environment.machine_load(device)
    cpu_start = environment.cpu_snapshot()
    torch.manual_seed(0)
    method = build_method(name, cfg, num_classes).to(device)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    size = tuple(int(v) for v in cfg["model"]["input_size"])
    params = method.parameter_breakdown()
    method.eval()
    macs = {}
    with torch.no_grad():
        for path, lr in (("query", True), ("gallery", False)):
            x = random_images(1, size, torch.device("cpu"), False).to(device)
            macs[path] = count_macs(lambda x=x, lr=lr: method.embed(
                x, torch.tensor([lr], device=device)))
    attempts, batch, train_batch = [], batch_size, train_batch_size
    while True:
        try:
            timings = _measure(method, cfg, device, batch, amp, channels_last, compiled, repeats,
                               warmup, train_batch, compile_backend)
            break
        except torch.OutOfMemoryError:
            attempts.append({"batch_size": batch, "result": "out of memory"})
            torch.cuda.empty_cache()
            if batch == 1:
                raise UserError(f"profile {name}: out of memory even at batch size 1") from None
            batch //= 2
            train_batch = max(1, train_batch // 2) if train_batch else None
        except Exception as exc:
            if compiled:
                raise UserError(f"--compile failed for {name}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
            raise
    h, w = size
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": name,
        "profile": cfg["profile"],
        "input_size": [h, w],
        "batch_size": batch,
        "batch_size_requested": batch_size,
        "train_batch_size": train_batch or batch,
        "oom_retries": attempts,
        "precision": "bf16-amp" if amp else "fp32",
        "layout": "channels_last" if channels_last else "contiguous",
        "compiled": compiled,
        "compile_backend": compile_backend if compiled else None,
        "num_classes": num_classes,
        "weights_origin": method.weights_origin,
        "parameters": params,
        "macs": {"query_gmacs": macs["query"] / 1e9, "gallery_gmacs": macs["gallery"] / 1e9,
                 "unit": f"GMACs per image at {h}x{w} (multiply-accumulates = FLOPs / 2, "
                         "torch.utils.flop_counter)"},
        "throughput": timings,
        "repeats": repeats,
        "warmup": warmup,
        "machine_load": _load_block(device, load_start, cpu_start),
        "environment": environment.block(device),
    }


def record_name(rec: dict[str, Any]) -> str:
    """timm-style file name: what was measured, how, and on what."""
    dev = rec["environment"]["device"].split(":")[0]
    torch_v = rec["environment"]["versions"]["torch"].split("+")[0]
    compiled = "__compiled" if rec["compiled"] else ""
    return (f"profile__{rec['method']}__{rec['profile']}__{dev}__{rec['precision']}__"
            f"{rec['layout']}{compiled}__bs{rec['batch_size']}__torch{torch_v}.json")
