"""Run Python in the project's one torch environment, making it first if it is not there.

    python scripts/venv_run.py -m pytest -q          # what `tox -e py` runs

torch with its CUDA libraries takes about 6 GB, so the suite keeps one environment: the
``.venv`` the README's install command makes (or the folder named by ``$MLRBENCH_VENV``). tox's
environments (``py``, ``bench``, ``mutation``) hold only tox and run their commands through this
script in that environment. When the folder has no environment, or one made from another
``pyproject.toml`` (a stamp file records which), ``pip install -e ".[test]"`` brings it up to
date first (a no-op when nothing changed).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = ".mlr-bench-pyproject"


def environment() -> Path:
    return Path(os.environ.get("MLRBENCH_VENV") or ROOT / ".venv").resolve()


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure(env: Path) -> Path:
    """The environment's interpreter, with the project installed as pyproject.toml says."""
    py = python_of(env)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = env / STAMP
    if py.exists() and stamp.is_file() and stamp.read_text().strip() == want:
        return py
    if not py.exists():
        print(f"venv_run: making the project's environment {env} (torch and its CUDA libraries: "
              "about 6 GB, a few minutes)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    else:
        print(f"venv_run: bringing {env} up to date with pyproject.toml", file=sys.stderr,
              flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"],
                   check=True, cwd=ROOT)
    stamp.write_text(want + "\n")
    return py


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    py = ensure(environment())
    return subprocess.run([str(py), *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
