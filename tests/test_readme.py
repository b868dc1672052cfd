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
    (path,) = (tmp_path / "res").glob("my-method__*[0-9a-f].json")
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
    (path,) = (project / "res").glob("baseline__my-data__smoke__*[0-9a-f].json")
    rec = json.loads(path.read_text())
    assert rec["data"]["generated"] is True
    assert rec["data"]["counts"]["query_ids"] == 4
    assert rec["data"]["fingerprint"]["files"] == 24 * 8  # every file the split reads


def _tables(text: str) -> list[tuple[str, list[str]]]:
    """(header line, row lines) of every Markdown table in ``text``."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append((lines[i], lines[i + 2 : j]))
            i = j
        else:
            i += 1
    return out


def test_readme_tables_copied_from_the_report_match_it():
    """A README table whose header is one of the committed report's (docs/report/report.md,
    rendered from docs/results) holds only rows the report has: numbers are copied, never
    typed."""
    readme = (ROOT / "README.md").read_text()
    report = (ROOT / "docs" / "report" / "report.md").read_text()
    report_rows = set(report.splitlines())
    copied = [(h, rows) for h, rows in _tables(readme) if h in report_rows]
    assert len(copied) >= 3
    for header, rows in copied:
        missing = [r for r in rows if r not in report_rows]
        assert not missing, f"README rows under {header[:60]!r} not in the report: {missing}"


def test_readme_cost_table_is_the_committed_profile_records():
    from reports.results import cost_frame, load_store

    readme = (ROOT / "README.md").read_text()
    header = ("| method | params all / inference (M) | GMACs query / gallery | query img/s | "
              "gallery img/s | train img/s |")
    tables = [rows for h, rows in _tables(readme) if h == header]
    assert tables, "README.md has no cost table"
    frame = cost_frame(load_store(ROOT / "docs" / "results" / "profile"))
    expected = {
        f"| {r['method']} | {r['params all (M)']:.2f} / {r['params inference (M)']:.2f} | "
        f"{r['GMACs query']:.3f} / {r['GMACs gallery']:.3f} | {r['query img/s']:.1f} | "
        f"{r['gallery img/s']:.1f} | {r['train img/s']:.1f} |" for _, r in frame.iterrows()}
    # every profile record is in a README table (one per profile), as its record says
    assert {row for rows in tables for row in rows} == expected
