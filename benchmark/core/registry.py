"""One registry class for methods and datasets (fast-reid style, stricter).

A registry maps a name to an object. Registering a taken name raises: two plugins or two files
claiming one name is a bug to fix, not a silent overwrite. Unknown names raise
:class:`~benchmark.core.errors.UserError` listing the valid ones. A registry may also load installed
plugins from an entry-point group (``mlr_bench.methods``, ``mlr_bench.datasets``) the first
time it is asked for its names or for a name it does not hold.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

from benchmark.core.errors import UserError

log = logging.getLogger(__name__)

T = TypeVar("T")


class RegistryError(UserError):
    """A name registered twice, or a plugin that cannot be loaded."""


class Registry(Generic[T]):
    """Name -> object, for one kind of thing ("method", "dataset").

    Args:
        kind: what the entries are, for messages.
        entry_point_group: installed plugins of this group are imported on first lookup; each
            entry point names a module or an object whose import registers its entries.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; a taken name raises :class:`RegistryError`."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"a {self.kind} needs a non-empty name; got {name!r}")
        if name in self._items:
            if self._items[name] is item:
                return item
            taken = self._items[name]
            hint = ""
            if (isinstance(item, type) and isinstance(taken, type) and issubclass(item, taken)
                    and "name" not in vars(item)):
                hint = (f"; {item.__name__} inherits name '{name}' from {taken.__name__}: set "
                        f"its own, e.g. name = \"{_suggest_name(item.__name__)}\"")
            raise RegistryError(f"{self.kind} name '{name}' is already registered (by "
                                f"{_where(taken)}); {_where(item)} cannot take it{hint}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and interactive use)."""
        self._items.pop(name, None)

    def decorator(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """A decorator registering its argument under ``name_of(argument)``."""

        def wrap(item: T) -> T:
            return self.register(name_of(item), item)

        return wrap

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except RegistryError:
                raise
            except Exception as exc:  # a broken plugin: name it, keep the cause
                raise RegistryError(f"{self.kind} plugin '{ep.name}' ({ep.value}, entry point "
                                    f"group {self.entry_point_group}) failed to load: {exc}"
                                    ) from exc

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load_plugins()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The entry named ``name``; unknown names raise UserError listing the valid ones."""
        if name not in self:
            raise UserError(f"unknown {self.kind} '{name}'; valid {self.kind}s: "
                            f"{', '.join(self.names())}")
        return self._items[name]

    __getitem__ = get


def _suggest_name(class_name: str) -> str:
    """MyMethod -> my-method."""

    return re.sub(r"(?<!^)(?=[A-Z])", "-", class_name).lower()


def _where(item: object) -> str:
    module = getattr(item, "__module__", None) or type(item).__module__
    qual = getattr(item, "__qualname__", None) or type(item).__qualname__
    return f"{module}.{qual}"


def import_object(spec: str, what: str) -> object:
    """``'package.module:Name'`` -> the object (a user's method class outside the project)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"{what} '{spec}': expected module:Name, e.g. mypkg.mymodule:MyMethod")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{what} '{spec}': cannot import module '{module_name}' ({exc}); is it "
                        "on PYTHONPATH or installed?") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"{what} '{spec}': module '{module_name}' has no '{attr}'") from None
