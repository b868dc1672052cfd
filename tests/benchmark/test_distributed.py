"""One run on several processes (benchmark/distributed.py): the batch split into whole
identities, the first step of 2 gloo processes against one process computing the same global
batch, and a torchrun run end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.distributed import Dist, from_env, record_block, shard
from benchmark.core.errors import UserError
from benchmark.harness.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K = 4
NUM_CLASSES = 8


@pytest.mark.parametrize("world", [1, 2, 4])
def test_a_global_batch_splits_into_whole_identities(world):
    from datasets.samplers import PKSampler

    pids = np.repeat(np.arange(20), 6)
    sampler = PKSampler(pids, [False] * len(pids), 32, K, iters=5, seed=3)
    for batch in sampler.epoch(0):
        parts = [shard(batch, K, Dist(r, world)) for r in range(world)]
        assert np.array_equal(np.concatenate(parts), batch)  # an exact partition, in order
        owners = {}
        for r, part in enumerate(parts):
            assert len(part) == len(batch) // world
            for pid in set(pids[part].tolist()):
                assert owners.setdefault(pid, r) == r  # each identity in one process only
                assert (pids[part] == pid).sum() == K  # with all its K images


def test_launcher_variables():
    assert from_env({}) == Dist()
    d = from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (d.rank, d.world, d.local_rank, d.launcher) == (1, 2, 1, "torchrun")
    s = from_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"})
    assert (s.rank, s.world, s.local_rank, s.launcher) == (3, 4, 1, "srun")
    assert from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == Dist()
    from benchmark.core.distributed import _first_host

    assert _first_host("gpu[03-05,07],cpu1") == "gpu03" and _first_host("node7") == "node7"


def test_a_world_size_that_splits_identities_is_required():
    from benchmark.core.distributed import check_batch

    cfg = load_config("smoke")  # P = 16 / 4 = 4 identities
    check_batch(cfg, Dist(0, 2))
    with pytest.raises(UserError, match="whole identities per process"):
        check_batch(cfg, Dist(0, 3))


def _global_batch():
    g = torch.Generator().manual_seed(7)
    images = torch.randn(4 * K, 3, 64, 32, generator=g)
    labels = torch.arange(4).repeat_interleave(K)
    return images, labels


def _worker(rank, world, folder):
    import torch.distributed as dist

    from benchmark.core import distributed
    from benchmark.harness.training import _Step
    from methods import Batch
    from methods.baseline import Baseline

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    distributed.set_current(Dist(rank, world, rank, "gloo", "test"))
    try:
        torch.manual_seed(rank)  # different on purpose: DDP starts from rank 0's weights
        method = Baseline(load_config("smoke", ["model.weights=none"]), NUM_CLASSES)
        if rank == 0:
            torch.manual_seed(0)
            method = Baseline(load_config("smoke", ["model.weights=none"]), NUM_CLASSES)
        images, labels = _global_batch()
        mine = shard(np.arange(len(labels)), K)
        ddp = torch.nn.parallel.DistributedDataParallel(_Step(method),
                                                        find_unused_parameters=True)
        method.train()
        out = ddp(Batch(images[mine], labels[mine], torch.zeros(len(mine), dtype=torch.bool),
                        gather=True))  # distributed.triplet global: mined over the whole batch
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
        torch.save({"loss": float(out["loss"].detach()), "triplet": float(out["triplet"]),
                    "grads": grads}, f"{folder}/rank{rank}.pt")
    finally:
        distributed.set_current(Dist())
        dist.destroy_process_group()


def _stage_worker(rank, world, folder):
    import torch.distributed as dist

    from benchmark.core import distributed

    dist.init_process_group("gloo", init_method=f"file://{folder}/store2", rank=rank,
                            world_size=world)
    distributed.set_current(Dist(rank, world, rank, "gloo", "test"))
    try:
        w = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.SGD([w], lr=1.0)
        (w * torch.tensor([1.0, 2.0, 3.0]) * (rank + 1)).sum().backward()  # rank's own grads
        distributed.average_gradients(opt)
        opt.step()
        torch.save({"grad": w.grad.clone(), "w": w.detach().clone()}, f"{folder}/s{rank}.pt")
    finally:
        distributed.set_current(Dist())
        dist.destroy_process_group()


@pytest.mark.integration
@pytest.mark.slow
def test_a_stage_averages_its_gradients_over_the_processes(tmp_path):
    """A stage outside DDP (a teacher, an SR network) steps its own optimiser on each process's
    block: the gradients are averaged first, so every process takes the same update."""
    import torch.multiprocessing as mp

    mp.spawn(_stage_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"s{r}.pt") for r in range(2)]
    mean = torch.tensor([1.0, 2.0, 3.0]) * 1.5  # (1 + 2) / 2
    for g in got:
        torch.testing.assert_close(g["grad"], mean)
        torch.testing.assert_close(g["w"], 1.0 - mean)
    w = torch.nn.Parameter(torch.ones(2))  # one process: nothing changes
    w.grad = torch.tensor([2.0, 4.0])
    from benchmark.core.distributed import average_gradients

    average_gradients(torch.optim.SGD([w], lr=1.0))
    assert torch.equal(w.grad, torch.tensor([2.0, 4.0]))


@pytest.mark.integration
@pytest.mark.slow
def test_two_processes_take_the_step_one_process_takes(tmp_path):
    """The mean of the 2 processes' first-step losses equals one process's loss on the same
    global batch, and so do the averaged gradients. BatchNorm normalises each process's block
    on its own (no SyncBatchNorm on CPU), so the one-process side does the same: each block
    through the network on its own, the identity loss averaged over the blocks, the triplet
    loss mined over the whole batch."""
    import torch.multiprocessing as mp

    from methods.baseline import Baseline
    from methods.losses import batch_hard_triplet, identity_loss

    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.manual_seed(0)
    cfg = load_config("smoke", ["model.weights=none"])
    method = Baseline(cfg, NUM_CLASSES)
    method.train()
    images, labels = _global_batch()
    blocks = [slice(0, 2 * K), slice(2 * K, 4 * K)]
    feats, ids = [], []
    for b in blocks:
        v = method.features(images[b])
        feats.append(v)
        ids.append(identity_loss(method.neck(v)[1], labels[b]))
    lc = cfg["loss"]
    tri = batch_hard_triplet(torch.cat(feats), labels, lc["triplet_margin"])
    loss = lc["lambda_cls"] * torch.stack(ids).mean() + lc["lambda_tri"] * tri
    loss.backward()
    assert np.mean([g["loss"] for g in got]) == pytest.approx(loss.item(), abs=1e-5)
    assert got[0]["triplet"] == pytest.approx(tri.item(), abs=1e-5) == got[1]["triplet"]
    checked = 0
    for name, p in method.named_parameters():
        if p.grad is None:
            assert all(name not in g["grads"] for g in got)
            continue
        checked += 1
        for g in got:  # DDP's averaged gradient, the same in both processes
            torch.testing.assert_close(g["grads"][name], p.grad, atol=2e-5, rtol=1e-4)
    assert checked > 50


def test_record_says_how_it_scaled():
    from methods.ftwa import FTWA

    cfg = load_config("smoke")
    one = record_block(cfg, Dist())
    assert one["world_size"] == 1 and one["triplet_mining"] == "single process"
    two = record_block(cfg, Dist(0, 2, 0, "gloo", "torchrun"))
    assert two["global_batch"] == 16 and two["per_process_batch"] == 8
    assert two["triplet_mining"].startswith("global")
    assert record_block(cfg, Dist(0, 2), FTWA)["triplet_mining"].startswith("per process")


def test_distributed_runs_have_their_own_run_id():
    from benchmark.harness.records import config_hash, run_config

    cfg = load_config("smoke")
    one = config_hash(run_config(cfg, None, None))
    assert one == config_hash(run_config(cfg, None, None, world_size=1))
    assert one != config_hash(run_config(cfg, None, None, world_size=2))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.subprocess
def test_torchrun_two_processes_write_one_record(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "benchmark", "run", "--method",
         "baseline", "--dataset", "synthetic", "--profile", "smoke", "--device", "cpu",
         "--out", str(tmp_path), "--no-progress", "--set", "model.weights=none"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [p for p in tmp_path.glob("*.json") if not p.name.endswith(".ranks.json")]
    assert len(records) == 1
    import json

    rec = json.loads(records[0].read_text())
    assert rec["environment"]["distributed"]["world_size"] == 2
    assert rec["environment"]["distributed"]["per_process_batch"] == 8
    assert proc.stdout.count("results:") == 1  # rank 0 alone reports
