"""Mutation testing by module group: each group's modules are mutated (mutmut) and checked by
that group's tests only, so a mutant costs seconds, not a whole training suite.

    python scripts/mutation.py                 # every group
    python scripts/mutation.py losses metrics  # some groups
    python scripts/mutation.py --list

Each group runs in its own copy of the project under ``mutation/<group>/`` (mutmut copies the
code once more into ``mutants/`` there and keeps its results, so a second run only checks what
changed), then the kill rate per module and the surviving mutants are printed
(``scripts/mutation_summary.py``). mutmut's other settings are ``[tool.mutmut]`` in
pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ["benchmark", "methods", "datasets", "reports", "scripts", "tests", "docs", "pyproject.toml",
        "README.md", "mkdocs.yml"]
#: group -> (modules mutated, mutmut mutant-name globs, the tests that check them)
GROUPS: dict[str, tuple[list[str], list[str], list[str]]] = {  # in the order they run
    "losses": (["methods/losses.py", "methods/swa.py"], ["methods.losses.*", "methods.swa.*"],
               ["tests/methods/test_baseline.py", "tests/methods/test_ftwa.py"]),
    "twins": (["datasets/transforms.py"], ["datasets.transforms.x_degrade*"],
              ["tests/methods/test_ftwa.py"]),
    "claims": (["reports/claims.py", "reports/swa.py"], ["reports.claims.*", "reports.swa.*"],
               ["tests/reports/test_claims.py"]),
    "distances": (["methods/ftwa.py", "benchmark/core/distances.py"],
                  ["methods.ftwa.*distance*", "benchmark.core.distances.x_pairwise_distance*"],
                  ["tests/methods/test_ftwa.py", "tests/benchmark/test_metrics.py"]),
    "metrics": (["benchmark/harness/metrics.py"], ["benchmark.harness.metrics.*"],
                ["tests/benchmark/test_metrics.py", "tests/benchmark/test_evaluation.py"]),
    "evaluation": (["benchmark/harness/evaluation.py"], ["benchmark.harness.evaluation.*"],
                   ["tests/benchmark/test_evaluation.py", "tests/benchmark/test_experiment.py",
                    "tests/benchmark/test_reliability.py"]),
    "training": (["benchmark/harness/training.py"], ["benchmark.harness.training.*"],
                 ["tests/benchmark/test_experiment.py", "tests/benchmark/test_reliability.py"]),
    "protocols": (["datasets/protocols.py", "datasets/base.py", "datasets/market1501.py",
                   "datasets/cuhk03.py", "datasets/viper.py", "datasets/caviar.py",
                   "datasets/synthetic.py"],
                  ["datasets.protocols.*", "datasets.base.*", "datasets.*.x_build*"],
                  ["tests/datasets", "tests/benchmark/test_experiment.py"]),
}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def prepare(group: str, work: Path) -> Path:
    """A copy of the project for one group, its pyproject pointing mutmut at the group."""
    modules, _, tests = GROUPS[group]
    folder = work / group
    folder.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src, dst = ROOT / name, folder / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst)
    pyproject = (folder / "pyproject.toml").read_text()
    pyproject = re.sub(r"only_mutate = \[.*?\]", f"only_mutate = {_toml_list(modules)}",
                       pyproject, flags=re.S)
    selection = [*tests, "-m", "not subprocess"]
    pyproject = re.sub(r"pytest_add_cli_args_test_selection = \[.*?\]",
                       f"pytest_add_cli_args_test_selection = {_toml_list(selection)}",
                       pyproject, flags=re.S)
    (folder / "pyproject.toml").write_text(pyproject)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="*", help=f"groups: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--list", action="store_true", help="list the groups and stop")
    parser.add_argument("--work", default=str(ROOT / "mutation"), help="work folder")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, globs, tests) in GROUPS.items():
            print(f"{name:<11} mutants {' '.join(globs)}  tests {' '.join(tests)}")
        return 0
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        print(f"error: unknown group(s) {', '.join(sorted(unknown))}; valid: "
              f"{', '.join(GROUPS)}", file=sys.stderr)
        return 2
    # the mutmut beside this interpreter first (tox -e mutation runs the torch env's python)
    here = Path(sys.executable).parent / "mutmut"
    mutmut = str(here) if here.is_file() else shutil.which("mutmut") or "mutmut"
    for group in args.groups or list(GROUPS):
        folder = prepare(group, Path(args.work))
        print(f"== {group}: mutmut run {' '.join(GROUPS[group][1])}", flush=True)
        subprocess.run([mutmut, "run", *GROUPS[group][1]], cwd=folder, check=False,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "mutation_summary.py"),
                        "--mutants", str(folder / "mutants"), "--survivors"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
