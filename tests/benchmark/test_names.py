"""The names the command line shows without importing torch are the registries' names."""

import subprocess
import sys

import pytest

from benchmark.core import names


def test_names_read_from_the_files_equal_the_registries():
    from datasets import DATASETS
    from datasets.synth import stand_ins
    from methods import METHODS

    # the built-in ones (tests may register methods of their own in this process)
    built_in = {n: c.description for n, c in METHODS.items() if c.__module__.startswith("methods.")}
    assert names.methods() == built_in
    assert names.datasets() == {n: s.description for n, s in DATASETS.items()}
    assert names.stand_ins() == {k: s.name for k, s in stand_ins().items()}


def _commands() -> list[str]:
    import argparse

    from benchmark.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


#: run in one child process, in order: after each, whether torch has been imported so far
CHILD = """
import contextlib, io, json, runpy, sys
out = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["benchmark", *argv]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            runpy.run_module("benchmark", run_name="__main__")
        except SystemExit:
            pass
    out.append([argv, "torch" in sys.modules, buf.getvalue()])
print(json.dumps(out))
"""


def test_every_command_is_checked():
    assert {"list", "run", "suite", "report", "evaluate", "visrank"} <= set(_commands())


@pytest.mark.subprocess
def test_help_of_every_command_and_list_import_no_torch():
    import json

    argvs = [["--help"], ["list"], *([c, "--help"] for c in _commands())]
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argvs)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    results = json.loads(proc.stdout)
    assert [argv for argv, _, _ in results] == argvs
    for argv, torch_imported, printed in results:
        assert not torch_imported, f"python -m benchmark {' '.join(argv)} imported torch"
        assert printed.strip(), argv
    assert "ftwa" in results[1][2]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.subprocess
def test_a_report_renders_without_torch(tmp_path):
    """Rendering committed records imports neither torch nor the methods."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    results = root / "docs" / "results" / "swa-guards-cpu"
    code = ("import sys\n"
            "from reports.render import render\n"
            f"render({str(results)!r}, {str(tmp_path / 'r')!r})\n"
            "bad = [m for m in ('torch', 'methods') if m in sys.modules]\n"
            "print('IMPORTED', bad) if bad else print('CLEAN')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout.strip().endswith("CLEAN"), proc.stdout[-300:]
    assert (tmp_path / "r" / "report.md").is_file()
