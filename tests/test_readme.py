"""The README's "Add your method" and "Add your dataset" sections, done as written: their code
blocks are taken from README.md, saved as the files they name, and their commands run."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def example(label: str) -> str:
    """The fenced block after ``<!-- example: LABEL -->`` in README.md."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- example: {re.escape(label)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no example '{label}'"
    return m.group(1)


@pytest.mark.slow
@pytest.mark.subprocess
def test_add_your_method_as_written(tmp_path):
    (tmp_path / "my_method.py").write_text(example("my_method.py"))
    command = example("run my_method").strip()
    env_part, _, rest = command.partition(" ")
    assert env_part == "PYTHONPATH=." and rest.startswith("python -m benchmark run")
    args = shlex.split(rest)[3:] + ["--out", str(tmp_path / "res"), "--no-progress"]
    # the project itself is importable as the README's install makes it; add it explicitly
    env = dict(os.environ, PYTHONPATH=f".{os.pathsep}{ROOT}")
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "res").glob("my-method__*.json")
    rec = json.loads(path.read_text())
    assert rec["method"] == "my-method" and rec["model"]["class"] == "my_method:MyMethod"
    assert rec["config"]["my_method"]["label_smoothing"] == 0.2
    p = rec["model"]["parameters"]
    assert p["train_only"] == p["modules"]["classifier"] > 0
    assert p["all"] == p["inference_path"] + p["train_only"]


@pytest.mark.slow
@pytest.mark.subprocess
def test_add_your_dataset_as_written(tmp_path):
    """In a copy of the project: the file goes into datasets/, the import line into
    datasets/__init__.py, and the three commands run as the README shows them."""
    import shutil

    project = tmp_path / "project"
    for name in ("benchmark", "methods", "datasets", "reports"):
        shutil.copytree(ROOT / name, project / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (project / "datasets" / "my_data.py").write_text(example("my_data.py"))
    text = (ROOT / "README.md").read_text()
    line = re.search(r"add `(from datasets import my_data as _my_data  # noqa: F401)`", text)
    assert line, "README.md names the import line to add"
    with open(project / "datasets" / "__init__.py", "a") as fh:
        fh.write(line.group(1) + "\n")
    env = dict(os.environ, PYTHONPATH=str(project))
    outputs = []
    for command in example("use my_data").strip().splitlines():
        args = shlex.split(command)
        assert args[:3] == ["python", "-m", "benchmark"]
        if args[3] == "run":
            args += ["--out", "res", "--no-progress"]
        proc = subprocess.run([sys.executable, *args[1:]], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr)
        outputs.append(proc.stdout)
    assert "GENERATED stand-in" in outputs[1] and "trial 2:" in outputs[1]
    assert "no published counts to compare with" in outputs[1]
    (path,) = (project / "res").glob("baseline__my-data__smoke__*.json")
    rec = json.loads(path.read_text())
    assert rec["data"]["generated"] is True
    assert rec["data"]["counts"]["query_ids"] == 4
    assert rec["data"]["fingerprint"]["files"] == 24 * 8  # every file the split reads
