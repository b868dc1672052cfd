"""The config profiles shipped with the suite (``benchmark/profiles/*.yaml``): their names and
one-line descriptions (read without importing torch, for ``list`` and ``--help``), and their
contents."""

from __future__ import annotations

from importlib import resources
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.safeio import load_yaml


def profile_dir():
    return resources.files("benchmark") / "profiles"


def list_profiles() -> dict[str, str]:
    """{profile name: one-line description} of the profiles shipped with the project."""
    out = {}
    for entry in sorted(profile_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml") and entry.name != "defaults.yaml":
            data = load_yaml(entry.read_text(), f"profile file {entry}") or {}
            out[entry.name[: -len(".yaml")]] = str(data.get("description", ""))
    return out


def read_profile(name: str) -> dict[str, Any]:
    """A profile file's contents ("defaults": the common sections)."""
    path = profile_dir() / f"{name}.yaml"
    data = load_yaml(path.read_text(), f"profile file {path}")
    if not isinstance(data, dict):
        raise UserError(f"profile file {path}: expected a mapping at the top level")
    return data
