"""The one place the registries meet the harness: every registered method and dataset, and the
config sections they declare (``ftwa``, ``sr``, ``data.cuhk03``, ...), joined with the common
sections of ``defaults.yaml`` by ``benchmark.harness.config``. Methods and datasets import only
the core; this module imports them.
"""

from __future__ import annotations

from benchmark.core.errors import UserError
from benchmark.core.options import Option
from benchmark.harness.records import COMMON_SECTIONS
from datasets import DATASETS
from methods import METHODS


def declared_sections() -> dict[str, dict[str, Option]]:
    """{dotted section: options} of every registered method ("ftwa") and dataset
    ("data.cuhk03"). Two registrants sharing a section must declare the same options."""
    out: dict[str, dict[str, Option]] = {}
    owner: dict[str, str] = {}
    entries = [(cls.config_section, cls.options, f"method '{name}'")
               for name, cls in METHODS.items() if cls.config_section]
    entries += [(f"data.{spec.config_section}", spec.options, f"dataset '{name}'")
                for name, spec in DATASETS.items() if spec.config_section]
    for section, options, who in entries:
        if section in COMMON_SECTIONS:
            raise UserError(f"{who} declares config section '{section}', a common section")
        if section in out and out[section] != options:
            raise UserError(f"{who} and {owner[section]} declare config section '{section}' "
                            "with different options")
        out[section], owner[section] = dict(options), who
    return out
