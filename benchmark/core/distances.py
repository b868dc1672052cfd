"""Distances between embeddings: what methods rank by and the harness evaluates with."""

from __future__ import annotations

import torch


def pairwise_distance(query: torch.Tensor, gallery: torch.Tensor, metric: str = "euclidean",
                      chunk: int = 4096) -> torch.Tensor:
    """(Q, D) x (G, D) -> (Q, G). ``euclidean``: not squared; ``cosine``: 1 - cosine similarity."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(query, dim=1)
        g = torch.nn.functional.normalize(gallery, dim=1)
        return 1.0 - q @ g.t()
    if metric != "euclidean":
        raise ValueError(f"unknown distance '{metric}'; expected euclidean or cosine")
    parts = [torch.cdist(query[i : i + chunk], gallery) for i in range(0, len(query), chunk)]
    return torch.cat(parts) if parts else query.new_zeros((0, len(gallery)))
