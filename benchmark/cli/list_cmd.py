"""``list``: the registered methods, datasets and profiles, or every config key."""

from __future__ import annotations

import argparse

from benchmark.core import names
from benchmark.harness.profiles import list_profiles


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("list", help="list methods, datasets and profiles (or every config key)",
                       description="List the registered methods, datasets and config profiles; "
                       "with --keys, every config key with its value and help.")
    p.add_argument("--keys", action="store_true", help="list every config key instead")
    p.add_argument("--profile", default="cpu", help="profile whose values --keys shows "
                   "(default: cpu)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.keys:
        return print_keys(args.profile)
    sections = [
        ("Methods", names.methods()),
        ("Datasets", names.datasets()),
        ("Profiles", list_profiles()),
    ]
    for title, items in sections:
        print(f"{title}:")
        width = max(len(n) for n in items)
        for name, desc in items.items():
            print(f"  {name:<{width}}  {desc}")
    for kind, group in (("method", "mlr_bench.methods"), ("dataset", "mlr_bench.datasets")):
        found = names.plugins(group)
        if found:
            print(f"Installed {kind} plugins (entry points of {group}, loaded when used): "
                  + ", ".join(found))
    print("Config keys: python -m benchmark list --keys [--profile P]")
    return 0


def print_keys(profile: str) -> int:
    """Every config key with its value at ``profile``; declared options with their help."""
    from benchmark.harness.config import declared_sections, flatten, load_config

    cfg = load_config(profile)
    helps = {f"{section}.{k}": o.help for section, opts in declared_sections().items()
             for k, o in opts.items()}
    print(f"Config keys at profile '{profile}' (common sections: benchmark/profiles/"
          "defaults.yaml, which comments each key; method and dataset sections: declared in "
          "their files)")
    for key, value in flatten(cfg).items():
        if key == "profile":
            continue
        note = f"  # {helps[key]}" if key in helps else ""
        print(f"  {key} = {value!r}{note}")
    return 0
