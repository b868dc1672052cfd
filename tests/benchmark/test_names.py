"""The names the command line shows without importing torch are the registries' names."""

import subprocess
import sys

import pytest

from benchmark.core import names


def test_names_read_from_the_files_equal_the_registries():
    from datasets import DATASETS
    from datasets.synth import stand_ins
    from methods import METHODS

    assert names.methods() == {n: c.description for n, c in METHODS.items()}
    assert names.datasets() == {n: s.description for n, s in DATASETS.items()}
    assert names.stand_ins() == {k: s.name for k, s in stand_ins().items()}


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["suite", "--help"], ["list"]])
def test_help_and_list_import_no_torch(argv):
    code = ("import sys, runpy; sys.argv = ['benchmark', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('benchmark', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=60)
    assert proc.stderr.strip().endswith("NO-TORCH"), proc.stderr[-500:]
    assert "ftwa" in proc.stdout or argv != ["list"]
