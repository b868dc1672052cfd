"""What a run is, before any image is decoded: its method and dataset, the built protocol and
the fingerprint of its data, the config hash, the run id; and the checks a run must pass
before work starts (enough identities for a P x K batch, a model that takes a step with this
config)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.core import distributed as dist_mod
from benchmark.core.checks import check_data_root
from benchmark.core.errors import UserError
from benchmark.harness.config import list_profiles, load_config
from benchmark.harness.cost import random_images, training_batch
from benchmark.harness.optim import build_optimizer
from benchmark.harness.preflight import checkpoint_bytes
from benchmark.harness.records import config_hash, run_config, run_id, run_prefix
from datasets import DATASETS, DatasetSpec, MLRData, build_dataset, fingerprint
from methods import Method, StepContext, resolve_method


@dataclass
class RunIdentity:
    """A run's identity: what makes it itself (the run id) and what built it."""

    method_cls: type[Method]
    spec: DatasetSpec
    data: MLRData
    fingerprint: dict[str, Any]
    config_hash: str
    trial: int
    seed: int
    profile: str
    prefix: str  # the run id without the data fingerprint: the same run on any data
    run_id: str

    def checkpoint_identity(self) -> dict[str, str]:
        """What a checkpoint or kept model must carry to be this run's."""
        return {"run_id": self.run_id, "config_hash": self.config_hash,
                "data_fingerprint": self.fingerprint["hash"]}


def identify(method_name: str, dataset: str, cfg: dict[str, Any], seed: int,
             data_root: str | None) -> RunIdentity:
    """The run's identity without decoding any image: the method class, the dataset spec, the
    built protocol, its fingerprint, the config hash, the run id (and its prefix)."""
    method_cls = resolve_method(method_name)
    spec = DATASETS[dataset]
    check_data_root(data_root, dataset, spec.needs_root, spec.folder)
    data = build_dataset(dataset, cfg, data_root)
    fp = fingerprint(data)
    chash = config_hash(run_config(cfg, method_cls.config_section, spec.config_section,
                                   world_size=dist_mod.current().world))
    trial = int(cfg["data"]["trial"])
    prefix = run_prefix(method_cls.name, dataset, cfg["profile"], seed, trial, chash)
    return RunIdentity(method_cls, spec, data, fp, chash, trial, seed, cfg["profile"], prefix,
                       run_id(method_cls.name, dataset, cfg["profile"], seed, trial, chash,
                              fp["hash"]))


def check_identities(ident: RunIdentity, cfg: dict[str, Any], data_root: str | None) -> None:
    """The training split holds at least the P identities a P x K batch samples; else one line
    saying which profile, batch size or stand-in size fits."""
    have = ident.data.counts()["train_ids"]
    k = int(cfg["train"]["num_instances"])
    p = int(cfg["train"]["batch_size"]) // k
    if have >= p:
        return
    fits = []
    for name in list_profiles():
        try:
            other = load_config(name)
        except UserError:
            continue
        if int(other["train"]["batch_size"]) // int(other["train"]["num_instances"]) <= have:
            fits.append(name)
    ways = []
    if fits:
        ways.append(f"a profile that fits: {', '.join(fits)}")
    if have >= 2:
        ways.append(f"--set train.batch_size={have * k} (P={have} x K={k})")
    gen = ident.data.info.get("generator") or {}
    if gen.get("ids") and ident.spec.folder:
        ids = math.ceil(int(gen["ids"]) * p / max(1, have) * 1.1)
        ways.append(f"a bigger stand-in: python -m benchmark synth --like {ident.spec.folder} "
                    f"--root {data_root} --ids {ids} (this one was written with --ids "
                    f"{gen['ids']})")
    raise UserError(f"dataset '{ident.spec.name}' has {have} training identities (trial "
                    f"{ident.trial}), but profile '{cfg['profile']}' samples P={p} "
                    f"identities per batch (train.batch_size {cfg['train']['batch_size']} / "
                    f"train.num_instances {k}); use " + "; or ".join(ways))


def trial_step(method_cls: type[Method], cfg: dict[str, Any], num_classes: int) -> int:
    """Build the model and run one re-id training step and one embedding of each path on a
    small random batch at the input size (CPU, one process), so that what a config can only
    show when the model runs (shapes, divisibility, a method's own checks) fails now, not after
    the images are decoded. Returns the checkpoint size of the model in bytes."""
    try:
        model = method_cls(cfg, num_classes)
        k = int(cfg["train"]["num_instances"])
        size = tuple(int(v) for v in cfg["model"]["input_size"])
        batch = training_batch(model, 2 * k, k, random_images(2 * k, size, torch.device("cpu")))
        model.train()
        model.on_train_start(10)
        opts = model.reid_optimizers(lambda params: build_optimizer(params, cfg["train"]))
        if model.manual_optimization:
            model.training_step(batch, StepContext(opts, 0, torch.device("cpu"),
                                                   lambda loss, name: None))
        else:
            model.training_step(batch)["loss"].backward()
        model.eval()
        with torch.no_grad():
            x = batch.images[:2]
            model.distance(model.embed(x, torch.ones(2, dtype=torch.bool)),
                           model.embed(x, torch.zeros(2, dtype=torch.bool)))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: the config does not fit the method
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UserError(f"method '{method_cls.name}' cannot run with this config: "
                        f"{type(exc).__name__}: {first} (a trial step on random images, before "
                        "any data was decoded)") from None
    return checkpoint_bytes(model)
