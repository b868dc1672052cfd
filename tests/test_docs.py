"""The documentation holds: the examples of docs/extending.md run as written, every table copied
from the committed report into the README or a docs page is still the report's, the cost table
is the committed profile records, the commands page is the parsers', the site builds with
``mkdocs build --strict``, and the README stays short with its two command blocks those CI
runs."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXTENDING = DOCS / "extending.md"
#: the pages written by hand (docs/report/ is rendered from the records)
PAGES = sorted(p for p in DOCS.rglob("*.md") if "report" not in p.relative_to(DOCS).parts)


def example(label: str) -> str:
    """The fenced block after ``<!-- example: LABEL -->`` in docs/extending.md."""
    text = EXTENDING.read_text()
    m = re.search(rf"<!-- example: {re.escape(label)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"docs/extending.md has no example '{label}'"
    return m.group(1)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.subprocess
def test_add_your_method_as_written(tmp_path):
    (tmp_path / "my_method.py").write_text(example("my_method.py"))
    command = example("run my_method").strip()
    env_part, _, rest = command.partition(" ")
    assert env_part == "PYTHONPATH=." and rest.startswith("python -m benchmark run")
    args = shlex.split(rest)[3:] + ["--out", str(tmp_path / "res"), "--no-progress"]
    # the project itself is importable as the install makes it; add it explicitly
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


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.subprocess
def test_add_your_dataset_as_written(tmp_path):
    """In a copy of the project: the file goes into datasets/, the import line into
    datasets/__init__.py, and the three commands run as the page shows them."""
    import shutil

    project = tmp_path / "project"
    for name in ("benchmark", "methods", "datasets", "reports"):
        shutil.copytree(ROOT / name, project / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (project / "datasets" / "my_data.py").write_text(example("my_data.py"))
    text = EXTENDING.read_text()
    line = re.search(r"add `(from datasets import my_data as _my_data  # noqa: F401)`", text)
    assert line, "docs/extending.md names the import line to add"
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


def test_tables_copied_from_the_report_match_it():
    """A table of the README or of a docs page whose header is one of the committed report's
    (docs/report/report.md, rendered from docs/results) holds only rows the report has: numbers
    are copied, never typed."""
    report = set((DOCS / "report" / "report.md").read_text().splitlines())
    found: dict[str, int] = {}
    for path in [ROOT / "README.md", *PAGES]:
        for header, rows in _tables(path.read_text()):
            if header not in report:
                continue
            found[path.name] = found.get(path.name, 0) + 1
            missing = [r for r in rows if r not in report]
            assert not missing, f"{path}: rows under {header[:60]!r} not in the report: {missing}"
    assert found.get("README.md", 0) >= 1 and found.get("results.md", 0) >= 3, found


def test_cost_tables_are_the_committed_profile_records():
    from reports.results import cost_frame, load_store

    header = ("| method | params all / inference (M) | GMACs query / gallery | query img/s | "
              "gallery img/s | train img/s |")
    tables = [rows for h, rows in _tables((DOCS / "cost.md").read_text()) if h == header]
    assert tables, "docs/cost.md has no cost table"
    frame = cost_frame(load_store(DOCS / "results" / "profile"))
    expected = {
        f"| {r['method']} | {r['params all (M)']:.2f} / {r['params inference (M)']:.2f} | "
        f"{r['GMACs query']:.3f} / {r['GMACs gallery']:.3f} | {r['query img/s']:.1f} | "
        f"{r['gallery img/s']:.1f} | {r['train img/s']:.1f} |" for _, r in frame.iterrows()}
    # every profile record is in a table of the page (one per profile), as its record says
    assert {row for rows in tables for row in rows} == expected


def test_every_exit_code_is_in_the_reliability_page():
    from benchmark.core import errors

    text = (DOCS / "reliability.md").read_text()
    codes = [v for k, v in vars(errors).items() if k.startswith("EXIT_")]
    assert len(codes) >= 5
    for code in codes:
        assert f"| {code} |" in text, code


def test_the_commands_page_is_the_parsers():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_commands
    finally:
        sys.path.pop(0)
    assert (DOCS / "commands.md").read_text() == gen_commands.render(), \
        "docs/commands.md is out of date: python scripts/gen_commands.py"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_the_readme_is_short_and_its_two_commands_are_the_ones_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    install, tests = _blocks(readme)[:2]
    # the same two blocks open the Getting started page
    assert _blocks((DOCS / "index.md").read_text())[:2] == [install, tests]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[test]"' in ci and 'pip install -e ".[test]"' in install
    assert "tox -e py" in ci and "tox -e py" in tests
    # and the integration tests the README names
    assert "tox -e integration" in ci and "tox -e integration" in readme
    # every page the README links to exists
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


@pytest.mark.subprocess
def test_the_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link or anchor between pages, or a page left out of
    the navigation, fails it."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "site" / "methods" / "ftwa" / "index.html").is_file()
