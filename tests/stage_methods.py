"""Two small methods that use what the method interface offers beyond one optimiser and one
loop (tests/benchmark/test_stages.py runs them):

* ``toy-adversarial``: a feature discriminator trained against the encoder, with alternating
  updates of two optimisers in the re-id stage (``manual_optimization``), as CSR-GAN, RAIN,
  CAD-Net and DIL train;
* ``toy-teacher``: a teacher trained on HR images in a stage of its own, then frozen, and a
  student trained in the re-id stage to match it, as PS-HRNet trains.

Tiny convolutional encoders, so that the tests take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.imaging import normalize
from methods import Batch, Method, Stage, StepContext, TrainContext
from methods.base import GALLERY, QUERY


def encoder(dim: int = 16, dropout: float = 0.0) -> nn.Module:
    """A tiny encoder; ``dropout`` draws from torch's global generator (which a resumed run
    must restore to match an uninterrupted one)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(8, dim))


class AdversarialToy(Method):
    """An encoder and a classifier (optimiser "main", the configured one) and a discriminator
    telling LR features from HR ones (optimiser "disc"): each step updates the discriminator on
    detached features, then the encoder against it."""

    name = "toy-adversarial"
    description = "test method: a feature discriminator trained against the encoder"
    mix_resolutions = True
    manual_optimization: ClassVar[bool] = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.encoder = encoder()
        self.classifier = nn.Linear(16, num_classes)
        self.disc = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1))

    def reid_optimizers(self, build):
        main = build([*self.encoder.parameters(), *self.classifier.parameters()])
        return {"main": main, "disc": torch.optim.Adam(self.disc.parameters(), lr=1e-3)}

    def training_step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        bce = nn.functional.binary_cross_entropy_with_logits
        f = self.encoder(batch.images)
        lr = batch.is_lr.float()[:, None]
        d_loss = bce(self.disc(f.detach()), lr)
        ctx.optimize("disc", d_loss)
        fool = bce(self.disc(f), 1.0 - lr)
        l_id = nn.functional.cross_entropy(self.classifier(f), batch.labels)
        loss = l_id + 0.1 * fool
        ctx.optimize("main", loss)
        return {"loss": loss.detach(), "id": l_id.detach(), "disc": d_loss.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.encoder(images)}

    def module_roles(self):
        return {"encoder": (self.encoder, {QUERY, GALLERY}), "classifier": (self.classifier, set()),
                "disc": (self.disc, set())}


class TeacherStage(Stage):
    """The teacher alone on HR training images (its own optimiser and batches drawn from a
    generator the stage keeps), for ``steps`` steps; frozen after."""

    name = "teacher"
    steps = 6
    log_every = 2
    checkpoint_every = 2

    def __init__(self, method: TeacherStudentToy):
        self.method = method
        self.gen = torch.Generator()

    def freeze_after(self) -> list[nn.Module]:
        return [self.method.teacher, self.method.teacher_head]

    def optimizers(self):
        params = [*self.method.teacher.parameters(), *self.method.teacher_head.parameters()]
        return {"teacher": torch.optim.SGD(params, lr=0.05, momentum=0.9)}

    def begin(self, context: TrainContext) -> None:
        self.gen = torch.Generator().manual_seed(context.seed + 17)

    def batches(self, context: TrainContext, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        prep = context.prep
        hr = prep.train[~prep.is_lr[prep.train]]
        where = {int(i): k for k, i in enumerate(prep.train)}
        while True:
            pick = hr[torch.randint(0, len(hr), (8,), generator=self.gen).numpy()]
            labels = torch.from_numpy(prep.labels[[where[int(i)] for i in pick]])
            yield normalize(prep.images[pick]), labels

    def step(self, batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.method.teacher_head(self.method.teacher(x))
        return {"loss": nn.functional.cross_entropy(logits, y)}

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])

    def end(self, context: TrainContext) -> dict[str, Any]:
        return {"teacher_params": int(sum(p.numel() for p in self.method.teacher.parameters()))}


class TeacherStudentToy(Method):
    """A teacher trained first (``TeacherStage``) and frozen; the student, in the re-id stage,
    learns identities and the teacher's features (L1)."""

    name = "toy-teacher"
    description = "test method: a teacher stage, then a student distilled from the frozen teacher"

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        self.teacher, self.teacher_head = encoder(), nn.Linear(16, num_classes)
        self.student, self.student_head = encoder(dropout=0.3), nn.Linear(16, num_classes)

    def stages(self) -> list[Stage]:
        return [TeacherStage(self)]

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        f = self.student(batch.images)
        with torch.no_grad():
            target = self.teacher(batch.images)
        l_id = nn.functional.cross_entropy(self.student_head(f), batch.labels)
        l_kd = (f - target).abs().mean()
        return {"loss": l_id + l_kd, "id": l_id.detach(), "distill": l_kd.detach()}

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.student(images)}

    def module_roles(self):
        return {"student": (self.student, {QUERY, GALLERY}),
                "student_head": (self.student_head, set()), "teacher": (self.teacher, set()),
                "teacher_head": (self.teacher_head, set())}

