"""Which CPU kernels make a run's numbers, and a mode that pins them to a common x86 baseline.

PyTorch picks its CPU kernels from the machine it runs on: ATen's vectorised kernels (the CPU
capability: DEFAULT, AVX2, AVX512, ...), oneDNN's convolutions and MKL's BLAS each dispatch to
the widest instruction set the CPU has, and parallel reductions split their work by the number
of threads. Two machines with the same software can therefore give different last digits, and
a training run amplifies them. ``portable`` numerics pins all of this before torch is imported:

* ``ATEN_CPU_CAPABILITY=avx2``: ATen's vectorised kernels at AVX2;
* ``DNNL_MAX_CPU_ISA=AVX2`` (and ``ONEDNN_MAX_CPU_ISA``, its newer name): oneDNN at AVX2;
* ``MKL_CBWR=AVX2,STRICT`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``: MKL's conditional numerical
  reproducibility on its AVX2 code path;
* ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``: a fixed thread count (2 unless ``--threads``
  says otherwise, the reference machine's).

It does not pin GPU kernels (cuDNN and cuBLAS choose by device), non-x86 CPUs, another torch,
numpy or Pillow version, or the image decoders; and an x86 CPU without AVX2 cannot run it.
This module imports no torch: the command line applies the mode before anything imports it.
"""

from __future__ import annotations

import os
import sys

from benchmark.core.errors import UserError

MODES = ("native", "portable")
#: the reference machine's thread count, used by ``portable`` unless ``--threads`` is given
PORTABLE_THREADS = 2
#: what ``portable`` sets, before torch is imported
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
#: the variables that decide CPU kernels and threads, recorded in every record
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
              "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: how a record names the mode it ran under
MODE_VARIABLE = "MLRBENCH_NUMERICS"


def settings(mode: str, threads: int | None) -> dict[str, str]:
    """The environment ``mode`` sets (nothing for ``native`` without ``threads``)."""
    if mode not in MODES:
        raise UserError(f"--numerics must be one of {', '.join(MODES)}; got '{mode}'")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be a positive number of threads; got {threads}")
    env: dict[str, str] = {}
    if mode == "portable":
        env.update(PORTABLE_ENV)
        threads = threads or PORTABLE_THREADS
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env[MODE_VARIABLE] = mode
    return env


def apply(mode: str, threads: int | None) -> dict[str, str]:
    """Set ``mode``'s environment for this process and the ones it starts. Torch reads these
    variables once, when it is first imported; so this must run before that, and refuses
    (naming what differs) when torch is already imported with other settings."""
    env = settings(mode, threads)
    if "torch" in sys.modules:
        differ = {k: v for k, v in env.items() if os.environ.get(k) != v}
        if differ:
            raise UserError(f"--numerics {mode}: torch is already imported in this process, so "
                            f"its kernels can no longer be pinned ({', '.join(differ)}); set "
                            "the mode from the command line, or these environment variables "
                            "before Python starts")
    if mode == "native":  # undo a portable parent's settings for this process's children
        for key in PORTABLE_ENV:
            os.environ.pop(key, None)
    os.environ.update(env)
    return env


def current_mode() -> str:
    """``portable`` when every pin of the portable mode is in force, else ``native``."""
    pinned = all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())
    return "portable" if pinned else "native"


def kernel_env() -> dict[str, str | None]:
    """The values of the variables that decide the CPU kernels and threads (None: unset)."""
    return {k: os.environ.get(k) for k in KERNEL_ENV}
