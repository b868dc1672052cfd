"""The method interface every method implements, and the method registry.

A method is an ``nn.Module`` built for a number of training identities. It declares what the
harness needs to know about it, so the harness never asks for a method by name or probes its
attributes:

* ``name`` and ``description`` (its row in the paper's tables is data of the reports:
  ``reports/suite_rows.yaml``);
* ``config_section`` and ``options``: its own config section (``--set <section>.<key>=...``),
  each option with a default and a help line; the run's config hash covers this section and
  no other method's;
* ``mix_resolutions``: the P x K sampler gives each identity both LR and HR images;
  ``training_mask(is_lr)``: which training images it trains on (all by default);
* ``module_roles()``: its modules and which lie on the query path (an LR image), the gallery
  path (an HR image) or are used in training only; parameter counts are computed from that,
  once, here;
* its training: ``stages()`` (stages before the re-id stage, each with its own optimisers,
  budget and batches: SR pre-training, a teacher, a pretext task), then the re-id stage:
  ``reid_optimizers(build)`` (one by default; a discriminator may add its own) and
  ``training_step(batch)`` (named losses, ``"loss"`` the total; with
  ``manual_optimization`` it updates its optimisers itself through ``ctx.optimize``);
* hooks the harness calls: ``on_train_start(total_steps)``, ``embed(images, is_lr)``,
  ``distance(query, gallery)``, ``distances(query, gallery)`` (alternative test distances,
  recorded beside the default), ``evaluation_extras(context)`` (anything it adds to the
  record: SR image quality, SWA weights, ...) and ``training_summary(history)`` (flags computed
  from the epoch history, e.g. FTWA's SWA collapse);
* ``uses_native_size``: ``embed`` takes ``native_size=`` (each image's size as captured), for
  methods that make synthetic LR copies at test time.

A new method is one file with a subclass decorated by ``@register_method``, imported from
``methods/__init__.py`` (or anywhere: ``--method mypkg.mymodule:MyMethod`` imports a class
from outside the project; installed packages can declare an entry point in the group
``mlr_bench.methods``).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchmark.core.distances import pairwise_distance
from benchmark.core.errors import UserError
from benchmark.core.options import Option
from benchmark.core.registry import Registry, RegistryError, import_object

#: where a module lies: on the query path (LR images), the gallery path (HR images), or neither
#: (used in training only, e.g. a classifier)
QUERY, GALLERY = "query", "gallery"


@dataclass
class Batch:
    """A training batch. ``images``: normalised float (B, 3, H, W); ``labels``: 0..C-1;
    ``is_lr``: resolution flag per image (real LR image, or down-sampled by the protocol);
    ``generator``: a seeded generator for randomness inside the step."""

    images: torch.Tensor
    labels: torch.Tensor
    is_lr: torch.Tensor
    #: for any randomness inside the step (FTWA's down-sampling rates); seeded per epoch
    generator: torch.Generator | None = None
    #: (B, 2) height, width of each image as captured (before resizing to the input size);
    #: synthetic LR twins are made at r relative to it (``benchmark.core.imaging.degrade``)
    native_size: torch.Tensor | None = None
    #: a run on several processes with ``distributed.triplet`` global: the triplet loss mines
    #: over the whole batch (``batch_hard_triplet(..., gather=batch.gather)``); else per process
    gather: bool = False


@dataclass
class TrainContext:
    """What a stage may use: the prepared data (``datasets.bank.Prepared``: images, labels,
    native sizes, and ``native_image(i)`` / ``as_captured(i, rate)`` for an image at its native
    size or through the protocol's LR path), the device, the run's seed, whether to show
    progress bars."""

    prep: Any
    device: torch.device
    seed: int
    progress: bool = True
    #: ``pk_batches(start, steps, rows=None, salt=0)``: batches like the re-id stage's (P x K of
    #: the config, augmented alike, labels 0..C-1 of the whole training set) for a stage that
    #: trains a re-id model of its own (a teacher), over the training rows ``rows`` (bank
    #: indices; None: all), ``steps`` of them from step ``start`` on, drawn from the run's seed
    #: and ``salt``, so a resumed stage sees the batches an uninterrupted one would
    pk_batches: Callable[..., Iterator[Batch]] | None = None


class StepContext:
    """What a stage's step may use: the stage's optimisers by name, the step's index (0-based,
    within the stage), the device, and :meth:`optimize` for manual optimisation (a
    discriminator's update, then the update of the encoder it is trained against)."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], step: int,
                 device: torch.device, check: Callable[[torch.Tensor, str], None],
                 before_step: Callable[[torch.optim.Optimizer], None] | None = None):
        self.optimizers = optimizers
        self.step = step
        self.device = device
        self._check = check
        #: called between backward and step (a stage's gradients averaged over processes)
        self._before_step = before_step
        self.updated: list[str] = []

    def optimize(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """One update of optimiser ``name`` on ``loss``: zero its gradients, backward, step (a
        non-finite loss stops training first, naming the optimiser)."""
        if name not in self.optimizers:
            raise KeyError(f"no optimiser '{name}' in this stage; it has "
                           f"{', '.join(self.optimizers)}")
        self._check(loss, name)
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph)
        if self._before_step is not None:
            self._before_step(opt)
        opt.step()
        self.updated.append(name)


class Stage:
    """A stage of a method's training before its re-id stage: SR pre-training, a teacher trained
    and then frozen, a pretext task. The harness's loop (``benchmark.harness.training``) runs
    the stages a method declares (``Method.stages``) in order, then the re-id stage; it
    checkpoints every stage at ``checkpoint_every`` steps (with the optimisers, the schedulers,
    :meth:`state_dict` and the random generators), resumes at the step it saved, records each
    stage (steps, time, its history and :meth:`end`'s summary) under ``training.stages``, and
    freezes the modules of :attr:`freeze_after` once the stage ends (again after a resume).

    A stage's own steps do not count in the re-id step budget, which is the same for every
    method at a profile (the fairness rule); they have their own budget, :attr:`steps`.

    Subclasses set ``name`` and ``steps`` and implement :meth:`optimizers`, :meth:`batches` and
    :meth:`step`; the rest is optional."""

    #: the stage's name in the record and the progress lines
    name: str = "stage"
    #: its step budget (the stage may stop earlier: :meth:`after_step`)
    steps: int = 0
    #: steps per history entry and progress line (0: one at the end)
    log_every: int = 0
    #: steps between checkpoints (0: ``log_every``, or only at the end)
    checkpoint_every: int = 0

    #: modules frozen (no gradient, evaluation mode) once the stage has ended
    def freeze_after(self) -> list[nn.Module]:
        return []

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The stage's optimisers by name, built when the stage starts (or resumes)."""
        raise NotImplementedError

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        """Learning-rate schedulers, each stepped once after every step (none by default)."""
        return {}

    def begin(self, context: TrainContext) -> None:
        """Before the first step of a fresh stage (not when it resumes: its state is then
        :meth:`load_state_dict`'s)."""

    def batches(self, context: TrainContext, start: int) -> Iterator[Any]:
        """The stage's batches from step ``start`` on; drawn from a generator the stage keeps
        in :meth:`state_dict`, or seeded by the step, so a resumed stage sees the batches an
        uninterrupted one would."""
        raise NotImplementedError

    def step(self, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Named losses of one step. With one optimiser, return ``"loss"`` and the harness
        updates it; with several, call ``ctx.optimize(name, loss)`` for each."""
        raise NotImplementedError

    def after_step(self, step: int, context: TrainContext, losses: dict[str, float]) -> bool:
        """After step ``step`` (the count of steps done, from 1) with its losses: True stops
        the stage early."""
        return False

    def end(self, context: TrainContext) -> dict[str, Any]:
        """When the stage is done: a summary for the record (``training.stages``)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the stage itself must keep across a resume (generators, counters, a best
        state): tensors and plain data only (checkpoints are read weights-only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class EvalContext:
    """What ``evaluation_extras`` may use: the prepared data (``datasets.bank.Prepared``), the
    device, the query and gallery embeddings, where the run writes (``out_dir`` / ``run_id``),
    the config."""

    prep: Any
    device: torch.device
    query: dict[str, torch.Tensor]
    gallery: dict[str, torch.Tensor]
    out_dir: Any
    run_id: str
    cfg: dict[str, Any] = field(default_factory=dict)


class Method(nn.Module, metaclass=ABCMeta):
    """Base class. Subclasses set ``name`` and ``description`` and implement
    ``training_step``, ``embed`` and ``module_roles``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: the method's own top-level config section and its options (None: no own options)
    config_section: ClassVar[str | None] = None
    options: ClassVar[dict[str, Option]] = {}
    #: the P x K sampler should give each identity both LR and HR images when it has both
    mix_resolutions: ClassVar[bool] = False
    #: in a run on several processes, how its triplet loss mines (docs/scaling.md, "One run on
    #: several GPUs"): "gathered" when it calls ``batch_hard_triplet(..., gather=batch.gather)``
    #: once per step
    triplet_under_ddp: ClassVar[str] = "per process"
    #: the name of the test distance, recorded with the metrics (None: eval.distance)
    distance_name: str | None = None
    #: whether that distance L2-normalises the features, recorded with the metrics (None:
    #: eval.normalize; a method with a distance of its own that ignores it says False)
    feature_normalized: bool | None = None
    #: ``embed(images, is_lr, native_size=...)`` is called with each image's size as captured
    uses_native_size: ClassVar[bool] = False

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise UserError(f"method '{self.name}' needs at least 2 training identities; "
                            f"got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.weights_origin = "n/a"

    # -- what it trains on --------------------------------------------------------------------
    @classmethod
    def training_mask(cls, is_lr: np.ndarray) -> np.ndarray:
        """Which training images (by resolution flag) the method trains on; default: all."""
        return np.ones(len(is_lr), dtype=bool)

    def on_train_start(self, total_steps: int) -> None:
        """Called once before training with the number of re-id optimiser steps of the run."""

    def stages(self) -> list[Stage]:
        """The stages of training before the re-id stage, in order (none by default): see
        :class:`Stage`. What a stage learns lives in the module's state (parameters, buffers,
        or ``get_extra_state`` for a report the method records in ``evaluation_extras``)."""
        return []

    #: the re-id stage calls ``training_step(batch, ctx)`` and the method updates its
    #: optimisers itself with ``ctx.optimize`` (several optimisers, alternating updates)
    manual_optimization: ClassVar[bool] = False

    def reid_optimizers(self, build: Callable[[Any], torch.optim.Optimizer]
                        ) -> dict[str, torch.optim.Optimizer]:
        """The re-id stage's optimisers by name. ``build(params)`` makes the configured one
        (``train.optimizer``, its learning rate and schedule: the paper's); the default is one,
        ``"main"``, over every trainable parameter. A method that also trains a discriminator
        returns it under its own name (and sets ``manual_optimization``)."""
        return {"main": build(self.parameters())}

    def reid_schedulers(self, optimizers: dict[str, torch.optim.Optimizer], iters: int,
                        epochs: int) -> dict[str, Any] | None:
        """The re-id stage's learning-rate schedulers by optimiser name, each stepped once per
        step (``iters`` steps per epoch, ``epochs`` epochs), for a method that follows its
        original's schedule; None (the default): the configured one (``train.*``) on
        ``"main"``."""
        return None

    def training_summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Keys added to the record's ``training`` block, computed from the epoch history."""
        return {}

    @abstractmethod
    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named losses of one re-id batch; ``"loss"`` is the total to minimise (with
        ``manual_optimization``: ``training_step(batch, ctx)``, which updates the optimisers
        itself and returns the losses to record)."""

    # -- test time ------------------------------------------------------------------------------
    @abstractmethod
    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image embeddings (a dict of (B, ...) tensors) through each image's path."""

    def distance(self, query: dict[str, torch.Tensor],
                 gallery: dict[str, torch.Tensor]) -> torch.Tensor:
        """Default: the configured distance on the ``feat`` embeddings (L2-normalised if set)."""
        q, g = query["feat"], gallery["feat"]
        if self.cfg["eval"]["normalize"]:
            q = nn.functional.normalize(q, dim=1)
            g = nn.functional.normalize(g, dim=1)
        return pairwise_distance(q, g, self.cfg["eval"]["distance"])

    def distances(self, query: dict[str, torch.Tensor],
                  gallery: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Alternative test distances by name, evaluated and recorded next to the default
        (FTWA's ablation of its weighted distance). None by default."""
        return {}

    @classmethod
    def released_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors under this method's parameter names (``evaluate-checkpoint``):
        a method whose original code names its modules otherwise maps them here. By default the
        names are taken as they are (a kept model of this suite, or code that uses its names)."""
        return state

    def evaluation_extras(self, context: EvalContext) -> dict[str, Any]:
        """Extra sections for the run's record (top-level key -> JSON-ready value)."""
        return {}

    # -- cost -----------------------------------------------------------------------------------
    @abstractmethod
    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        """{display name: (module, roles)}, roles a subset of {QUERY, GALLERY}; an empty set
        means training only. Together the modules must hold every parameter exactly once."""

    def parameter_breakdown(self) -> dict[str, Any]:
        """Parameter counts: per module, all, the inference path (query or gallery), the query
        path, the gallery path and training only. Every parameter is counted once."""
        roles = self.module_roles()
        counted: dict[int, str] = {}
        for label, (module, _) in roles.items():
            for p in module.parameters():
                if id(p) in counted:
                    raise TypeError(f"{type(self).__name__}.module_roles(): a parameter is in "
                                    f"both '{counted[id(p)]}' and '{label}'")
                counted[id(p)] = label
        missing = [n for n, p in self.named_parameters() if id(p) not in counted]
        if missing:
            raise TypeError(f"{type(self).__name__}.module_roles() leaves out parameters, "
                            f"e.g. {missing[0]}")

        def total(want: set[str] | None) -> int:
            return sum(count_params(m) for m, r in roles.values()
                       if (want is None and not r) or (want is not None and r & want))

        return {"modules": {label: count_params(m) for label, (m, _) in roles.items()},
                "all": count_params(self),
                "inference_path": total({QUERY, GALLERY}),
                "query_path": total({QUERY}), "gallery_path": total({GALLERY}),
                "train_only": total(None)}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


METHODS: Registry[type[Method]] = Registry("method", entry_point_group="mlr_bench.methods")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method under ``cls.name`` (a taken name raises)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"{cls!r} is not a subclass of methods.base.Method")
    if not cls.name or not cls.description:
        raise RegistryError(f"{cls.__name__} must set name and description")
    if cls.options and not cls.config_section:
        raise RegistryError(f"{cls.__name__} declares options but no config_section")
    return METHODS.register(cls.name, cls)


def resolve_method(name: str) -> type[Method]:
    """A registered method by name, or ``module:Class`` imported and registered on the way."""
    if ":" in name:
        cls = import_object(name, "--method")
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise UserError(f"--method '{name}' is not a subclass of methods.base.Method")
        if cls.name in METHODS and METHODS[cls.name] is cls:
            return cls
        return register_method(cls)
    return METHODS[name]


def build_method(name: str, cfg: dict[str, Any], num_classes: int) -> Method:
    return resolve_method(name)(cfg, num_classes)
