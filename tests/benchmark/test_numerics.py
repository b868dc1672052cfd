"""What decides the numbers: the environment block's CPU and numerics entries, the numerics
fingerprint (it sees the kernels), and the portable mode (it pins them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.core import numerics
from benchmark.core.errors import UserError
from benchmark.harness import environment
from benchmark.harness.reproduce import numbers

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
SHORT = ["--profile", "smoke", "--set", "model.weights=none", "--set", "train.epochs=1",
         "--set", "train.iters_per_epoch=2", "--no-progress"]


def test_portable_settings_pin_aten_onednn_mkl_and_threads():
    env = numerics.settings("portable", None)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["DNNL_MAX_CPU_ISA"] == "AVX2"
    assert env["MKL_CBWR"] == "AVX2,STRICT" and env["OMP_NUM_THREADS"] == "2"
    assert numerics.settings("portable", 8)["MKL_NUM_THREADS"] == "8"
    assert numerics.settings("native", None) == {numerics.MODE_VARIABLE: "native"}
    assert numerics.settings("native", 3)["OMP_NUM_THREADS"] == "3"
    with pytest.raises(UserError, match="--numerics must be one of"):
        numerics.settings("fast", None)
    with pytest.raises(UserError, match="--threads must be a positive"):
        numerics.settings("native", 0)


def test_the_mode_cannot_be_set_once_torch_is_imported(tmp_path, capsys):
    assert "torch" in sys.modules
    assert main(["run", "--method", "baseline", "--dataset", "synthetic", "--out", str(tmp_path),
                 "--numerics", "portable", *SHORT]) == 2
    err = capsys.readouterr().err
    assert "torch is already imported" in err and "ATEN_CPU_CAPABILITY" in err
    assert not list(tmp_path.iterdir())


def test_fingerprint_is_stable_leaves_the_global_generator_and_sees_the_threads():
    state = torch.random.get_rng_state()
    first = environment.numerics_fingerprint(CPU)
    assert torch.equal(state, torch.random.get_rng_state())
    assert environment.numerics_fingerprint(CPU) == first and len(first) == 16
    threads = torch.get_num_threads()
    if threads < 2:
        pytest.skip("one thread only: a thread count to compare with is not there")
    try:
        torch.set_num_threads(1)
        assert environment.numerics_fingerprint(CPU) != first
    finally:
        torch.set_num_threads(threads)


def test_the_environment_block_names_the_kernels():
    block = environment.block(CPU)
    cpu = block["cpu"]
    assert cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert cpu["threads"] == torch.get_num_threads() and set(cpu["env"]) == set(
        numerics.KERNEL_ENV)
    assert block["numerics"]["fingerprint"] == environment.numerics_fingerprint(CPU)
    assert block["numerics"]["mode"] == numerics.current_mode() and block["cuda"] is None


def _run(out: Path, *flags: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "baseline",
                           "--dataset", "synthetic", "--out", str(out), *SHORT, *flags],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=os.environ | (env or {}))
    assert proc.returncode == 0, proc.stderr[-800:]
    (path,) = [p for p in out.glob("*.json") if not p.name.endswith(".ranks.json")]
    return json.loads(path.read_text())


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.subprocess
def test_portable_runs_are_identical_and_another_pinned_capability_is_seen(tmp_path):
    """Two runs under --numerics portable in separate processes give the same numbers, and
    say so; a run pinned to another capability has another fingerprint."""
    if "avx2" not in environment.cpu_flags():
        pytest.skip("this CPU has no AVX2: the portable mode cannot run")
    a = _run(tmp_path / "a", "--numerics", "portable")
    b = _run(tmp_path / "b", "--numerics", "portable")
    assert numbers(a) == numbers(b) and a["run_id"] == b["run_id"]
    for rec in (a, b):
        env = rec["environment"]
        assert env["numerics"]["mode"] == "portable"
        assert env["cpu"]["torch_capability"] == "AVX2" and env["cpu"]["threads"] == 2
        assert env["cpu"]["env"]["MKL_CBWR"] == "AVX2,STRICT"
    other = _run(tmp_path / "c", env=numerics.PORTABLE_ENV | {"ATEN_CPU_CAPABILITY": "default",
                                                              "OMP_NUM_THREADS": "2"})
    assert other["environment"]["cpu"]["torch_capability"] == "DEFAULT"
    assert other["environment"]["numerics"]["fingerprint"] != a["environment"]["numerics"][
        "fingerprint"]
