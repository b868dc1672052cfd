"""The job a Slurm array runs for one suite cell (submitit; imported only by ``--launcher
slurm``). On a timeout or a preemption submitit calls :meth:`CellJob.checkpoint`, which
requeues the same cell: the run resumes from its own checkpoint under ``.checkpoints/``."""

from __future__ import annotations

from typing import Any

import submitit

from benchmark.harness.launch import run_cell


class CellJob(submitit.helpers.Checkpointable):
    """Callable with one cell (a dict of :class:`benchmark.harness.launch.Cell` fields)."""

    def __call__(self, cell: dict[str, Any]) -> dict[str, Any]:
        from benchmark.core.progress import show_progress_lines

        show_progress_lines()  # progress lines into the job's log
        return run_cell(cell)
