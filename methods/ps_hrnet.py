"""PS-HRNet (Zhang et al., "Deep High-Resolution Representation Learning for Cross-Resolution
Person Re-identification", IEEE TIP 2021) and its ablation rows, from a reading of the official
notebook (NUISTGY/Deep-High-Resolution-Representation-Learning-for-Cross-Resolution-Person-
Re-identification, ``PS-HRNet.ipynb`` at commit e6abdaa97700bc16164acb2f05e71cd92caf3289;
docs/methods/ps-hrnet.md is the specification).

* ``ps-hrnet-id``: HRNet-ReID alone. HRNet-W32 (timm's ``hrnet_w32``, whose "incre" outputs at
  128/256/512/1024 channels are exactly the official backbone's: same tensors, same names), each
  branch pooled as avg + alpha * max at 4x4 / 2x2 / 2x2 / 1x1 (alpha 0.5 / 0.2 / 0.2 / 0.2),
  concatenated (6144-d), a bottleneck Linear 6144 -> 512, BatchNorm, dropout 0.5, and a
  classifier. Loss: 1.15 x label-smoothed (0.1) cross-entropy + the mean of five batch-hard
  triplets (margin 0.3, Euclidean, unnormalised) on the 6144-d feature and each branch's.
* ``ps-hrnet-id-sr``: VDSR-CA in front (3 -> 64, 18 x [conv, channel attention, ReLU],
  64 -> 3, global residual), + 0.5 x L1(SR output, HR image).
* ``ps-hrnet``: + the pseudo-siamese teacher: an HR HRNet-ReID trained first in a stage of its
  own, then frozen; the student adds 0.5 x the sum of six mean L1 terms between its outputs and
  the teacher's on the HR counterpart (the five pooled features and the logits).

Test feature: the 6144-d pooled feature and the 512-d bottleneck (BatchNorm output), 6656-d,
the image's and its flip's summed, L2-normalised by the harness (eval.normalize).

Departures, each an option or said in the docs: the code pairs offline MLR files with their HR
originals; the suite's bank keeps no HR original of a protocol-LR training image, so the pairs
are the batch's HR images and their LR twins made at the protocol's rates (``twins``); the
teacher's own training code is not in the repository (its architecture is: the student's without
VDSR), so the teacher trains with the ID's losses and the student's optimiser (``teacher_steps``);
the code's 71-epoch schedule is laid over the suite's re-id budget in proportion (``optimizer``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from benchmark.core.torchio import load_torch
from methods import blocks
from methods.base import (
    GALLERY,
    QUERY,
    Batch,
    Method,
    Stage,
    StepContext,
    TrainContext,
    register_method,
)
from methods.blocks import lr_twins
from methods.losses import batch_hard_triplet, identity_loss

#: the timm HRNets whose "incre" outputs have the 128/256/512/1024 channels the head expects
HRNETS = ("hrnet_w32", "hrnet_w18_small", "hrnet_w18_small_v2", "hrnet_w18")
#: per branch: adaptive pooling side and the weight of max pooling (the code's teacher, and its
#: student before the last commit; the last commit's 3x3 on branch 2 cannot run: docs)
POOL_SIDES = (4, 2, 2, 1)
MAX_WEIGHTS = (0.5, 0.2, 0.2, 0.2)
BRANCH_CHANNELS = (128, 256, 512, 1024)
POOLED_DIM = sum(c * s * s for c, s in zip(BRANCH_CHANNELS, POOL_SIDES))  # 6144

OPTIONS = {
    "hrnet": Option("hrnet_w32", "timm HRNet under the head: hrnet_w32 (the code's), or a "
                    "smaller one with the same output channels for CPU profiles", HRNETS),
    "imagenet": Option("auto", "ImageNet HRNet weights: auto (timm's file in the Hugging Face "
                       "cache if present, else random init; none when model.weights=none), "
                       "none, or a path to a state dict (the official "
                       "hrnetv2_w32_imagenet_pretrained.pth or timm's); never downloaded"),
    "vdsr_blocks": Option(18, "VDSR-CA's conv + attention + ReLU blocks", low=1),
    "vdsr_width": Option(64, "VDSR-CA's channels", low=4),
    "ca_reduction": Option(16, "channel attention's reduction (64 -> 4 in the code)", low=1),
    "bottleneck": Option(512, "bottleneck width (Linear 6144 -> this, BatchNorm, dropout)",
                         low=8),
    "dropout": Option(0.5, "dropout after the bottleneck's BatchNorm", low=0.0, high=0.99),
    "id_weight": Option(1.15, "weight of the label-smoothed cross-entropy", low=0.0),
    "label_smoothing": Option(0.1, "label smoothing epsilon", low=0.0, high=0.99),
    "triplet_margin": Option(0.3, "margin of the five batch-hard triplets (their mean counts)",
                             low=0.0),
    "sr_weight": Option(0.5, "weight of L1(VDSR output, HR image) (id-sr and full)", low=0.0),
    "distill_weight": Option(0.5, "weight of the sum of the six mean L1 distances to the "
                             "teacher's outputs (full)", low=0.0),
    "twins": Option(True, "pair each HR image of a batch with its LR twin at the protocol's "
                    "rates (the student sees both; the HR image is the SR target and the "
                    "teacher's input): the suite's stand-in for the code's offline LR/HR file "
                    "pairs. false: the batch as drawn, HR images paired with themselves"),
    "optimizer": Option("code", "code: SGD Nesterov (momentum 0.9, weight decay 5e-4 on every "
                        "parameter), 3e-4 for the first 5/71 of training, then 0.0085 x "
                        "0.1^(epoch // 30) on the 71-epoch scale, laid over the run's re-id "
                        "budget; suite: the student takes train.optimizer with its schedule, the "
                        "teacher Adam at train.base_lr and train.weight_decay, constant",
                        ("code", "suite")),
    "teacher_steps": Option(0, "steps of the teacher stage (ps-hrnet; 0: the re-id stage's "
                            "budget, as the code trains both for 71 epochs)", low=0),
    "test_flip": Option(True, "sum each test image's feature with its horizontal flip's"),
}

#: the code's schedule, on its own 71-epoch scale
CODE_EPOCHS, CODE_WARM_EPOCHS, CODE_STEP_EPOCHS = 71, 5, 30
CODE_WARM_LR, CODE_LR = 3e-4, 0.0085


def code_lr(fraction: float) -> float:
    """The code's learning rate at ``fraction`` of training (0..1) on its 71-epoch scale: 3e-4
    (constant) for epochs 0-4, then 0.0085 x 0.1^(epoch // 30)."""
    return code_lr_at_epoch(int(fraction * CODE_EPOCHS))


def code_lr_at_epoch(epoch: int) -> float:
    if epoch < CODE_WARM_EPOCHS:
        return CODE_WARM_LR
    return CODE_LR * 0.1 ** (epoch // CODE_STEP_EPOCHS)


def code_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=CODE_LR, momentum=0.9, nesterov=True, weight_decay=5e-4)


def code_scheduler(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per step: the learning rate of :func:`code_lr` at step / ``steps``."""
    total = max(1, steps)
    return torch.optim.lr_scheduler.LambdaLR(  # the epoch on the 71-epoch scale, in integers
        opt, lambda it: code_lr_at_epoch(min(it, total - 1) * CODE_EPOCHS // total) / CODE_LR)


class ChannelAttention(nn.Module):
    """Global average pooling, 1x1 conv to ``width // reduction`` (bias), ReLU, 1x1 conv back
    (bias), sigmoid; the input scaled by it."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        mid = max(1, width // reduction)
        self.squeeze = nn.Conv2d(width, mid, 1)
        self.expand = nn.Conv2d(mid, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.squeeze(w))))


class VDSRBlock(nn.Module):
    def __init__(self, width: int, reduction: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.ca = ChannelAttention(width, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.ca(self.conv(x)))


class VDSRCA(nn.Module):
    """VDSR with channel attention, at the input size: conv 3 -> w (ReLU), ``blocks`` x
    [conv w -> w, channel attention, ReLU], conv w -> 3, plus the input (global residual). Every
    convolution's weight ~ N(0, sqrt(2 / (k * k * out channels))), biases as PyTorch sets them."""

    def __init__(self, blocks: int = 18, width: int = 64, reduction: int = 16):
        super().__init__()
        self.input = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[VDSRBlock(width, reduction) for _ in range(blocks)])
        self.output = nn.Conv2d(width, 3, 3, padding=1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / k) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.output(self.blocks(torch.relu(self.input(x))))


def hrnet_weights(arch: str, choice: str, model_weights: str) -> tuple[dict | None, str]:
    """ImageNet weights for timm's ``arch`` (a state dict, or None) and where they came from:
    never downloaded; ``choice`` auto looks in the Hugging Face cache timm fills."""
    if choice == "none" or model_weights == "none":
        return None, "random-init (no ImageNet weights asked for)"
    paths: list[str] = []
    if choice == "auto":
        hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
        pattern = os.path.join(hub, f"models--timm--{arch}.*", "snapshots", "*")
        for folder in sorted(glob.glob(pattern)):
            paths += [os.path.join(folder, n) for n in ("model.safetensors", "pytorch_model.bin")
                      if os.path.isfile(os.path.join(folder, n))]
        if not paths:
            return None, f"random-init (no ImageNet {arch} weights in the cache {hub})"
    else:
        if not os.path.isfile(choice):
            raise UserError(f"ps_hrnet.imagenet: no such file {choice}")
        paths = [choice]
    path = paths[0]
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file  # reads tensors only, runs no code

        state = load_file(path)
    else:
        state = load_torch(path, "ps_hrnet.imagenet file")
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"ps_hrnet.imagenet: {path} holds no state dict")
    return state, f"ImageNet ({path})"


class HRNetReID(nn.Module):
    """HRNet's four "incre" outputs, each pooled avg + alpha x max at its side, concatenated;
    the bottleneck (Linear, BatchNorm1d, dropout) and the classifier. ``forward`` returns the
    pooled 6144-d feature, the four branch features, the bottleneck's BatchNorm output and the
    logits."""

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__()
        import timm  # imported here: building a model is the first use

        p = cfg["ps_hrnet"]
        self.hrnet = timm.create_model(p["hrnet"], pretrained=False, features_only=True,
                                       out_indices=(1, 2, 3, 4))
        channels = tuple(self.hrnet.feature_info.channels())
        if channels != BRANCH_CHANNELS:
            raise UserError(f"ps_hrnet.hrnet={p['hrnet']}: its outputs have {channels} "
                            f"channels; the head expects {BRANCH_CHANNELS}")
        state, self.weights_origin = hrnet_weights(p["hrnet"], p["imagenet"],
                                                   cfg["model"]["weights"])
        if state is not None:
            own = self.hrnet.state_dict()
            fit = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            missing = [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]
            if missing:
                raise UserError(f"ps_hrnet.imagenet: the file does not hold {p['hrnet']}: "
                                f"{len(missing)} of its {len(own)} tensors are missing or of "
                                f"another shape (e.g. {missing[0]}); give the weights of "
                                f"{p['hrnet']} or ps_hrnet.imagenet=none")
            self.hrnet.load_state_dict(fit, strict=False)
        width = int(p["bottleneck"])
        self.bottleneck = nn.Sequential(nn.Linear(POOLED_DIM, width), nn.BatchNorm1d(width),
                                        nn.Dropout(float(p["dropout"])))
        self.classifier = nn.Linear(width, num_classes)
        nn.init.kaiming_normal_(self.bottleneck[0].weight, a=0, mode="fan_out")
        nn.init.normal_(self.bottleneck[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.bottleneck[1].bias)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        branches = []
        for f, side, alpha in zip(self.hrnet(x), POOL_SIDES, MAX_WEIGHTS):
            pooled = (nn.functional.adaptive_avg_pool2d(f, side)
                      + alpha * nn.functional.adaptive_max_pool2d(f, side))
            branches.append(pooled.flatten(1))
        y = torch.cat(branches, dim=1)
        b = self.bottleneck[1](self.bottleneck[0](y))
        logits = self.classifier(self.bottleneck[2](b))
        return {"pooled": y, "branches": branches, "bn": b, "logits": logits}


def reid_losses(out: dict[str, Any], labels: torch.Tensor, p: dict[str, Any]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The label-smoothed cross-entropy and the mean of the five batch-hard triplets."""
    l_id = identity_loss(out["logits"], labels, float(p["label_smoothing"]))
    feats = [out["pooled"], *out["branches"]]
    l_tri = sum(batch_hard_triplet(f, labels, float(p["triplet_margin"])) for f in feats)
    return l_id, l_tri / len(feats)


class TeacherStage(blocks.TeacherStage):
    """PS-HRNet's first phase: the HR teacher (HRNet-ReID, no VDSR) trained on the HR training
    images with the ID row's losses and the student's optimiser, then frozen. Batches: P x K of
    the HR training images, drawn as the re-id stage draws (``TrainContext.pk_batches``)."""

    name = "teacher"
    section = "ps_hrnet"

    def freeze_after(self) -> list[nn.Module]:
        return [self.method.teacher]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = self.method.teacher.parameters()
        if self.method.cfg["ps_hrnet"]["optimizer"] == "code":
            return {"teacher": code_optimizer(params)}
        from_cfg = self.method.cfg["train"]
        return {"teacher": torch.optim.Adam(params, lr=float(from_cfg["base_lr"]),
                                            weight_decay=float(from_cfg["weight_decay"]))}

    def schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        if self.method.cfg["ps_hrnet"]["optimizer"] == "code":
            return {"teacher": code_scheduler(optimizers["teacher"], self.steps)}
        return {}

    def batches(self, context: TrainContext, start: int) -> Iterator[Batch]:
        prep = context.prep
        hr = prep.train[~prep.is_lr[prep.train]]
        if len(hr) == 0:
            raise UserError("ps-hrnet: the training split has no HR image to train the teacher "
                            "on")
        assert context.pk_batches is not None
        return context.pk_batches(start, self.steps, hr, salt=1)

    def step(self, batch: Batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        p = self.method.cfg["ps_hrnet"]
        out = self.method.teacher(batch.images)
        l_id, l_tri = reid_losses(out, batch.labels, p)
        loss = float(p["id_weight"]) * l_id + l_tri
        return {"loss": loss, "id": l_id.detach(), "triplet": l_tri.detach()}

    def end(self, context: TrainContext) -> dict[str, Any]:
        return {"teacher_params": int(sum(p.numel() for p in self.method.teacher.parameters()))}


@register_method
class PSHRNet(Method):
    name = "ps-hrnet"
    description = ("PS-HRNet (TIP 2021, official notebook): VDSR-CA + HRNet-W32 ReID head, a "
                   "frozen HR teacher distilled into the LR student")
    config_section = "ps_hrnet"
    options = OPTIONS
    mix_resolutions = True
    triplet_under_ddp = "per process"
    manual_optimization: ClassVar[bool] = False
    #: the rows of the ablation: VDSR-CA in front, the teacher
    use_sr: ClassVar[bool] = True
    use_teacher: ClassVar[bool] = True

    def __init__(self, cfg: dict[str, Any], num_classes: int):
        super().__init__(cfg, num_classes)
        p = cfg["ps_hrnet"]
        self.rates = [int(r) for r in cfg["data"]["rates"]]
        self.vdsr = (VDSRCA(int(p["vdsr_blocks"]), int(p["vdsr_width"]), int(p["ca_reduction"]))
                     if self.use_sr else None)
        self.net = HRNetReID(cfg, num_classes)
        self.weights_origin = self.net.weights_origin
        self.teacher = HRNetReID(cfg, num_classes) if self.use_teacher else None
        self.reid_steps = 0

    # -- training -------------------------------------------------------------------------------
    def on_train_start(self, total_steps: int) -> None:
        self.reid_steps = int(total_steps)

    def stages(self) -> list[Stage]:
        return [TeacherStage(self)] if self.use_teacher else []

    def _student_params(self) -> list[nn.Parameter]:
        return [*(self.vdsr.parameters() if self.vdsr is not None else []),
                *self.net.parameters()]

    def reid_optimizers(self, build):
        if self.cfg["ps_hrnet"]["optimizer"] == "code":
            return {"main": code_optimizer(self._student_params())}
        return {"main": build(self._student_params())}

    def reid_schedulers(self, optimizers: dict[str, torch.optim.Optimizer], iters: int,
                        epochs: int) -> dict[str, Any] | None:
        if self.cfg["ps_hrnet"]["optimizer"] == "code":
            return {"main": code_scheduler(optimizers["main"], iters * epochs)}
        return None

    def pairs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
        """The student's inputs and labels, and its paired rows with their HR counterparts:
        the batch (real LR images unpaired, HR images paired with themselves) and, with
        ``twins``, each HR image's LR twin paired with it."""
        x, labels, hr = batch.images, batch.labels, ~batch.is_lr
        rows = torch.nonzero(hr).squeeze(1)
        targets = x[hr]
        if self.cfg["ps_hrnet"]["twins"] and bool(hr.any()):
            twins, _, _ = lr_twins(batch, self.rates)
            rows = torch.cat([rows, len(x) + torch.arange(len(twins), device=x.device)])
            x = torch.cat([x, twins])
            labels = torch.cat([labels, batch.labels[hr]])
            targets = torch.cat([targets, targets])
        return x, labels, rows, targets

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        p = self.cfg["ps_hrnet"]
        x, labels, rows, targets = self.pairs(batch)
        sr = self.vdsr(x) if self.vdsr is not None else x
        out = self.net(sr)
        l_id, l_tri = reid_losses(out, labels, p)
        total = float(p["id_weight"]) * l_id + l_tri
        losses = {"id": l_id.detach(), "triplet": l_tri.detach()}
        if self.vdsr is not None and len(rows):
            l_sr = nn.functional.l1_loss(sr[rows], targets)
            total = total + float(p["sr_weight"]) * l_sr
            losses["sr"] = l_sr.detach()
        if self.teacher is not None and len(rows):
            self.teacher.eval()
            n = int((~batch.is_lr).sum())  # the HR images; their twins repeat them
            with torch.no_grad():
                t = self.teacher(targets[:n])
            mine = [out["pooled"][rows], *(b[rows] for b in out["branches"]),
                    out["logits"][rows]]
            theirs = [v.repeat(len(rows) // n, 1) for v in (t["pooled"], *t["branches"],
                                                            t["logits"])]
            l_kd = sum(nn.functional.l1_loss(s, o) for s, o in zip(mine, theirs))
            total = total + float(p["distill_weight"]) * l_kd
            losses["distill"] = l_kd.detach()
        return {"loss": total, **losses}

    def train(self, mode: bool = True) -> PSHRNet:
        super().train(mode)
        if self.teacher is not None and not any(q.requires_grad
                                                for q in self.teacher.parameters()):
            self.teacher.eval()  # frozen after its stage: BatchNorm statistics stay
        return self

    # -- test -----------------------------------------------------------------------------------
    def _feature(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.vdsr(x) if self.vdsr is not None else x)
        return torch.cat([out["pooled"], out["bn"]], dim=1)

    def embed(self, images: torch.Tensor, is_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self._feature(images)
        if self.cfg["ps_hrnet"]["test_flip"]:
            f = f + self._feature(images.flip(-1))
        return {"feat": f}

    def module_roles(self) -> dict[str, tuple[nn.Module, set[str]]]:
        both = {QUERY, GALLERY}
        roles: dict[str, tuple[nn.Module, set[str]]] = {}
        if self.vdsr is not None:
            roles["vdsr-ca"] = (self.vdsr, both)
        roles["hrnet"] = (self.net.hrnet, both)
        roles["bottleneck"] = (self.net.bottleneck, both)
        roles["classifier"] = (self.net.classifier, set())
        if self.teacher is not None:
            roles["teacher"] = (self.teacher, set())
        return roles

    @classmethod
    def released_state_dict(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The official notebook's names (``vdsr.residual_layer.N.{conv,ca.module.1,
        ca.module.3}``, ``vdsr.input``, ``vdsr.output``, HRNet's own names at the top,
        ``classifier.add_block.{0,1}``, ``classifier.classifier.0``) as this model's; HRNet's
        unused ``downsamp_modules`` and ``final_layer`` dropped. A state dict already in this
        model's names is returned as it is."""
        if any(k.startswith("net.") for k in state):
            return state
        out: dict[str, torch.Tensor] = {}
        for k, v in state.items():
            head = k.split(".")[0]
            if head in ("downsamp_modules", "final_layer"):
                continue
            if k.startswith("vdsr."):
                k = (k.replace("vdsr.residual_layer.", "vdsr.blocks.")
                     .replace(".ca.module.1.", ".ca.squeeze.").replace(".ca.module.3.",
                                                                       ".ca.expand."))
                out[k] = v
            elif k.startswith("classifier.add_block."):
                out["net.bottleneck." + k.removeprefix("classifier.add_block.")] = v
            elif k.startswith("classifier.classifier.0."):
                out["net.classifier." + k.removeprefix("classifier.classifier.0.")] = v
            else:
                out["net.hrnet." + k] = v
        return out


@register_method
class PSHRNetIDSR(PSHRNet):
    name = "ps-hrnet-id-sr"
    description = ("PS-HRNet's ablation row ID+SR: VDSR-CA + HRNet-ReID, no teacher")
    use_teacher = False


@register_method
class PSHRNetID(PSHRNet):
    name = "ps-hrnet-id"
    description = ("PS-HRNet's ablation row ID: HRNet-ReID alone (HRNet-W32, pooled "
                   "multi-branch head), no VDSR-CA, no teacher")
    use_sr = False
    use_teacher = False
