"""P x K identity sampling for metric-learning batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from benchmark.core.errors import UserError


class PKSampler:
    """Batches of P identities x K images each, drawn with an explicit generator.

    Identities with fewer than K images are drawn with replacement. With ``mix_resolutions``,
    an identity that has both LR and HR images contributes K/2 of each (rounded), so every batch
    holds both kinds where the data has them (FTWA needs real LR and HR images together).

    Args:
        pids: training label of each image (0..C-1).
        is_lr: resolution flag of each image.
        batch_size: P x K.
        num_instances: K.
        iters: batches per epoch.
        seed: the generator's seed; epoch ``e`` uses ``(seed, e)`` so runs resume exactly.
    """

    def __init__(self, pids: Sequence[int], is_lr: Sequence[bool], batch_size: int,
                 num_instances: int, iters: int, seed: int, mix_resolutions: bool = False):
        if batch_size % num_instances:
            raise ValueError(f"batch_size {batch_size} is not a multiple of K={num_instances}")
        self.k = num_instances
        self.p = batch_size // num_instances
        self.iters = iters
        self.seed = seed
        self.mix = mix_resolutions
        self.by_pid: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        groups: dict[int, list[list[int]]] = defaultdict(lambda: [[], []])
        for i, (pid, lr) in enumerate(zip(pids, is_lr)):
            groups[int(pid)][int(bool(lr))].append(i)
        for pid, (hr, lr) in groups.items():
            self.by_pid[pid] = (np.array(hr, dtype=np.int64), np.array(lr, dtype=np.int64))
        self.pids = np.array(sorted(self.by_pid), dtype=np.int64)
        if len(self.pids) < self.p:
            raise UserError(
                f"P x K sampling needs at least P={self.p} identities; the training set has "
                f"{len(self.pids)} (lower train.batch_size or raise train.num_instances)"
            )

    def _pick(self, rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
        return rng.choice(pool, size=n, replace=len(pool) < n)

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """The batches (index arrays of length P*K) of epoch ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.pids)
        pos = 0
        for _ in range(self.iters):
            if pos + self.p > len(order):
                order, pos = rng.permutation(self.pids), 0
            chosen = order[pos : pos + self.p]
            pos += self.p
            parts = []
            for pid in chosen:
                hr, lr = self.by_pid[int(pid)]
                if self.mix and len(hr) and len(lr):
                    n_lr = self.k // 2
                    parts += [self._pick(rng, hr, self.k - n_lr), self._pick(rng, lr, n_lr)]
                else:
                    parts.append(self._pick(rng, np.concatenate([hr, lr]), self.k))
            yield np.concatenate(parts)
