"""The built-in methods, datasets and stand-in layouts by name and description, read from their
files without importing them (no torch), for ``--help`` and ``list``.

A method registers with ``@register_method`` on a class whose ``name`` and ``description`` are
string literals; a dataset with ``register_dataset(DatasetSpec(name=..., description=...,
folder=..., write_stand_in=...))``. This module reads those literals from the source files of
the ``methods`` and ``datasets`` packages (Python's ``ast``), so a new method or dataset stays
one file; ``tests/benchmark/test_names.py`` holds what it reads equal to the live registries.
Installed plugins (entry points) are named by their entry point until they are loaded.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _literal(node: ast.AST | None) -> str | None:
    try:
        value = ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _files(package: str) -> list[Path]:
    folder = ROOT / package
    return sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")


@lru_cache(maxsize=1)
def methods() -> dict[str, str]:
    """{name: description} of every class decorated with ``register_method`` in methods/."""
    out: dict[str, str] = {}
    for path in _files("methods"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef) or not any(
                    getattr(d, "id", getattr(d, "attr", None)) == "register_method"
                    for d in node.decorator_list):
                continue
            fields = {t.id: stmt.value for stmt in node.body if isinstance(stmt, ast.Assign)
                      for t in stmt.targets if isinstance(t, ast.Name)}
            name, description = _literal(fields.get("name")), _literal(fields.get("description"))
            if name:
                out[name] = description or ""
    return dict(sorted(out.items()))


@lru_cache(maxsize=1)
def _dataset_specs() -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for path in _files("datasets"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DatasetSpec"):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            name = _literal(kw.get("name"))
            if name:
                out[name] = {"description": _literal(kw.get("description")) or "",
                             "folder": _literal(kw.get("folder")),
                             "stand_in": "write_stand_in" in kw}
    return dict(sorted(out.items()))


def datasets() -> dict[str, str]:
    """{name: description} of every dataset registered in datasets/."""
    return {n: s["description"] or "" for n, s in _dataset_specs().items()}


def stand_ins() -> dict[str, str]:
    """{layout (synth --like): dataset} for every dataset with a generated stand-in."""
    return dict(sorted((s["folder"], n) for n, s in _dataset_specs().items()
                       if s["folder"] and s["stand_in"]))


def plugins(group: str) -> list[str]:
    """Entry points of an installed plugin group, by name (not loaded)."""
    try:
        return sorted(ep.name for ep in metadata.entry_points(group=group))
    except Exception:  # noqa: BLE001 - broken metadata must not break --help
        return []
