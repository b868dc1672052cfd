"""A declared config option of a method or dataset: its default, help line and bounds.

Methods and datasets declare their own config sections as ``{key: Option}``; the harness joins
them with the common sections (``benchmark.harness.config``) and type- and range-checks every
value a user sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    """One declared config option of a method or dataset: its default (which also fixes its
    type for ``--set``), a help line, and optionally the values it may take."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    #: bounds of a number (or of each item of a list of numbers), checked after every override
    low: float | None = None
    high: float | None = None
    #: an integer option that must be a multiple of this
    multiple_of: int | None = None
