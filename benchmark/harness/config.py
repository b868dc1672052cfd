"""Configuration: YAML profiles inside the project, dotted ``--set`` overrides, type checks,
and the part of a config that identifies a run.

A resolved config is a plain nested ``dict``. ``defaults.yaml`` holds the common sections
(model, data, train, loss, eval) with the paper's values; each registered method adds its own
top-level section and each registered dataset its ``data.<name>`` section, declared as
:class:`Option` s in the method's or dataset's file; a profile (``paper``, ``cpu``, ``smoke``)
overrides some keys; ``--set a.b=c`` overrides any existing key. Unknown keys and values of the
wrong type raise :class:`UserError`.

A run's config hash covers only what it reads: the common sections (``data.trial`` aside: the
trial is part of the run id), its dataset's section and its method's section. Adding a key to
one method's or dataset's section leaves every other run's hash as it was.
"""

from __future__ import annotations

import copy
import difflib
import math
from typing import Any

from benchmark.core.errors import UserError, short
from benchmark.core.safeio import load_yaml
from benchmark.harness.catalog import declared_sections
from benchmark.harness.profiles import list_profiles, read_profile

# Common keys whose value must be one of a fixed set (checked after every override); the
# options of methods and datasets declare their own choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.arch": ("resnet18", "resnet34", "resnet50", "resnet101"),
    "eval.query_resolution": ("lr", "hr"),
    "eval.distance": ("euclidean", "cosine"),
    "data.interpolation": ("bicubic", "bilinear", "nearest", "lanczos"),
    "train.optimizer": ("adam", "sgd"),
    "distributed.triplet": ("global", "local"),
    "eval.rerank_form": ("code", "paper"),
    "train.erasing_fill": ("random", "mean"),
    "train.data_path": ("cpu", "pinned", "device"),
}


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}. Lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _merge(base: dict[str, Any], override: dict[str, Any], where: str, prefix: str = "") -> None:
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise UserError(f"{where}: unknown config key '{dotted}'" + _suggest(dotted, base))
        if isinstance(base[key], dict) and base[key]:
            if not isinstance(value, dict):
                raise UserError(f"{where}: '{dotted}' is a section; expected a mapping")
            _merge(base[key], value, where, dotted + ".")
        else:
            base[key] = _coerce(dotted, base[key], value, where)


def _suggest(dotted: str, base: dict[str, Any]) -> str:
    close = difflib.get_close_matches(dotted.split(".")[-1], list(base), n=3)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(key: str, default: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type of ``default`` (the key's value before the override).
    Every key has a value: null is refused like any other wrong type."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        number = _number(value)
        if number is not None:
            return number
    elif isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(default, list):
        if isinstance(value, list):
            if default and value:
                return [_coerce(f"{key}[{i}]", default[0], v, where) for i, v in enumerate(value)]
            return value
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    raise UserError(
        f"{where}: '{key}' expects {_type_name(default)} (like {short(default)}), got "
        f"{short(value)}"
    )


def _number(value: Any) -> float | None:
    """A string YAML 1.1 leaves as text but a user means as a number ('3e-4', '1E5')."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def parse_override(text: str) -> tuple[str, Any]:
    """'a.b=c' -> ('a.b', parsed c). The value is read as YAML (numbers, lists, true/false)."""
    if "=" not in text:
        raise UserError(f"--set {short(text)}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = load_yaml(raw, f"--set {short(key, 60)}") if raw.strip() else ""
    except UserError as exc:
        if "nested" in str(exc):
            raise
        value = raw  # not YAML: the text itself (a string option)
    return key, value


def set_dotted(cfg: dict[str, Any], key: str, value: Any, where: str = "--set") -> None:
    """Set an existing dotted key, type-checked. Unknown keys raise with the valid ones nearby."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            valid = sorted(flatten(cfg))
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean: {', '.join(close)}" if close else "see --help for the keys"
            raise UserError(f"{where}: unknown config key {short(key, 80)} ({hint})")
        if i < len(parts) - 1:
            node = node[part]
    last = parts[-1]
    if isinstance(node[last], dict) and node[last]:
        raise UserError(f"{where}: '{key}' is a section; set one of its keys, e.g. {key}.<name>")
    node[last] = _coerce(key, node[last], value, where)


def get_dotted(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


#: a lower bound meaning "greater than 0"
POSITIVE = 1e-12
#: bounds of common numeric keys: (low, high), inclusive, None for open; a list's items each
RANGES: dict[str, tuple[float | None, float | None]] = {
    "model.last_stride": (1, 2),
    "model.input_size": (16, None),
    "data.seed": (0, 2**32 - 1),
    "data.rates": (1, None),
    "eval.sweep_rates": (1, 64),
    "eval.sweep_heights": (4, 4096),
    "eval.ranks_top_k": (0, 1000),
    "data.trial": (0, None),
    "data.lr_height_threshold": (0, None),
    "train.epochs": (1, None),
    "train.iters_per_epoch": (0, None),
    "train.batch_size": (2, None),
    "train.num_instances": (1, None),
    "train.base_lr": (POSITIVE, 10.0),
    "train.weight_decay": (0, 1.0),
    "train.momentum": (0, 1.0),
    "train.warmup_epochs": (0, None),
    "train.warmup_factor": (POSITIVE, 1.0),
    "train.milestones": (0, None),
    "train.gamma": (POSITIVE, None),
    "train.pad_crop": (0, None),
    "train.random_erasing": (0, 1.0),
    "train.erasing_area": (POSITIVE, 1.0),
    "train.erasing_aspect": (POSITIVE, 1.0),
    "train.checkpoint_every": (1, None),
    "loss.lambda_cls": (0, None),
    "loss.lambda_tri": (0, None),
    "loss.lambda_raft": (0, None),
    "loss.triplet_margin": (0, None),
    "loss.label_smoothing": (0, 0.999),
    "eval.batch_size": (1, None),
    "eval.max_rank": (1, None),
    "eval.single_shot_repeats": (1, None),
    "eval.rerank_k1": (1, None),
    "eval.rerank_k2": (1, None),
    "eval.rerank_lambda": (0, 1.0),
}
#: list-valued keys that must not be empty, with their length if fixed
LISTS: dict[str, int | None] = {"model.input_size": 2, "data.rates": None,
                                "train.erasing_area": 2}


def _bounds_text(low: float | None, high: float | None) -> str:
    above = "> 0" if low == POSITIVE else f">= {low:g}" if low is not None else ""
    if high is None:
        return above
    if low is None:
        return f"<= {high:g}"
    return f"{above} and <= {high:g}" if low == POSITIVE else f"in [{low:g}, {high:g}]"


def _check_range(key: str, value: Any, low: float | None, high: float | None) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue  # a type error is reported by the type check
        if not math.isfinite(v) or (low is not None and v < low) or (high is not None
                                                                     and v > high):
            what = "each value" if isinstance(value, list) else "a value"
            raise UserError(f"config '{key}' must be {what} {_bounds_text(low, high)}; got "
                            f"{short(value)}")


def validate(cfg: dict[str, Any]) -> None:
    """Check every value by meaning (choices, ranges, list lengths) and the cross-key rules a
    type check alone cannot; each failure is one UserError naming the key and what it expects."""
    flat = flatten(cfg)
    choices = dict(CHOICES)
    ranges = dict(RANGES)
    for section, options in declared_sections().items():
        choices |= {f"{section}.{k}": o.choices for k, o in options.items() if o.choices}
        ranges |= {f"{section}.{k}": (o.low, o.high) for k, o in options.items()
                   if o.low is not None or o.high is not None}
    for key, allowed in choices.items():
        if key in flat and flat[key] not in allowed:
            raise UserError(
                f"config '{key}' must be one of {', '.join(map(str, allowed))}; got "
                f"{short(flat[key])}"
            )
    for key, length in LISTS.items():
        value = flat.get(key)
        if not isinstance(value, list) or not value or (length and len(value) != length):
            size = f"{length} values" if length else "at least one value"
            raise UserError(f"config '{key}' must be a list of {size}; got {short(value)}")
    for key, (low, high) in ranges.items():
        if key in flat:
            _check_range(key, flat[key], low, high)
    for section, options in declared_sections().items():
        for k, o in options.items():
            value = flat.get(f"{section}.{k}")
            if o.multiple_of and isinstance(value, int) and value % o.multiple_of:
                raise UserError(f"config '{section}.{k}' must be a multiple of {o.multiple_of}; "
                                f"got {value}")
    train = cfg["train"]
    if train["batch_size"] % train["num_instances"] != 0:
        raise UserError(
            "config 'train.batch_size' must be a multiple of 'train.num_instances' (P x K); got "
            f"{train['batch_size']} and {train['num_instances']}"
        )
    for key in ("eval.sweep_rates", "eval.sweep_heights"):
        value = get_dotted(cfg, key)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise UserError(f"config '{key}' must be a list of whole numbers, e.g. "
                            f"{key}=[1,2,3,4,6,8]; got {value!r}")
        if len(set(value)) != len(value):
            raise UserError(f"config '{key}' lists a value twice; got {value!r}")
    split_file = cfg["data"].get("split_file")
    if split_file is not None and (not isinstance(split_file, str) or not split_file):
        raise UserError("config 'data.split_file' must be null or the path of a split file "
                        f"(python -m benchmark split export); got {short(split_file)}")
    low, high = train["erasing_area"]
    if low > high:
        raise UserError(f"config 'train.erasing_area' must be [low, high] with low <= high; got "
                        f"{train['erasing_area']}")
    milestones = train["milestones"]
    if list(milestones) != sorted(milestones):
        raise UserError(f"config 'train.milestones' must be in increasing order; got "
                        f"{milestones}")


def load_config(
    profile: str = "cpu", overrides: list[str] | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Resolve ``defaults.yaml`` + profile + ``extra`` (a nested dict) + ``--set`` overrides."""
    profiles = list_profiles()
    if profile not in profiles:
        raise UserError(f"unknown profile '{profile}'; valid profiles: {', '.join(profiles)}")
    cfg = read_profile("defaults")
    for section, options in declared_sections().items():
        node = cfg
        *parents, last = section.split(".")
        for part in parents:
            node = node[part]
        if last in node:
            raise UserError(f"config section '{section}' is declared by a method or dataset "
                            "and also in defaults.yaml; keep one")
        node[last] = {k: copy.deepcopy(o.default) for k, o in options.items()}
    prof = read_profile(profile)
    prof.pop("description", None)
    _merge(cfg, prof, f"profile '{profile}'")
    if extra:
        _merge(cfg, copy.deepcopy(extra), "config")
    for text in overrides or []:
        key, value = parse_override(text)
        set_dotted(cfg, key, value)
    cfg["profile"] = profile
    validate(cfg)
    return cfg
