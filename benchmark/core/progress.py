"""Progress a person can see: bars on a terminal (tqdm), and plain lines everywhere.

Library code reports through the logger ``mlr_bench.progress`` (one line per phase and per
epoch, an estimate of the training time after the first steps); the CLI sends that logger's
lines to standard output, so ``run ... > log.txt`` shows them while it runs. Bars are drawn only
when standard error is a terminal.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("mlr_bench.progress")

#: training longer than this on a device that is not a GPU gets a warning naming a faster
#: profile
SLOW_RUN_S = 15 * 60.0
#: other processes keeping at least this many cores busy make the machine "shared"
BUSY_CORES = 0.5
#: what each profile can step down to on a CPU
FASTER = {"paper": "--profile cpu trains a smaller model on 2 CPU cores in about five minutes, "
                   "--profile smoke runs the whole pipeline in seconds",
          "cpu": "--profile smoke runs the whole pipeline in seconds"}


def human(seconds: float) -> str:
    """12 s, 4 min 05 s, 3 h 20 min."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def phase(message: str) -> None:
    log.info(message)


def estimate(seconds_per_step: float, steps_left: int, device_type: str, profile: str,
             others: float | None = None, cores: int | None = None) -> float:
    """Log the estimated remaining training time; say when other processes kept the CPU busy
    during the steps it was measured on (``others``: cores, see
    ``benchmark.harness.environment.others_busy``), and name a faster profile when it is long on a
    CPU."""
    total = seconds_per_step * steps_left
    log.info("estimated training time: %s (%d steps at %.2f s/step)", human(total), steps_left,
             seconds_per_step)
    if others is not None and others >= BUSY_CORES:
        of = f" of {cores}" if cores else ""
        log.warning("other processes kept %.1f%s CPU cores busy during these steps: the machine "
                    "is shared, so this run trains slower than on an idle one (its record keeps "
                    "the measure as machine_load.other_processes_cores)", others, of)
    if device_type != "cuda" and total > SLOW_RUN_S:
        hint = FASTER.get(profile, "--profile smoke runs the whole pipeline in seconds")
        log.warning("this run would train for about %s on %s, not a GPU: %s", human(total),
                    device_type, hint)
    return total


class _Flushing(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time, and flushes every line."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)
        self.flush()


def show_progress_lines() -> None:
    """Progress lines (``mlr_bench.progress``: phases, one line per epoch, time estimates) go to
    standard output, flushed at once, so a log file shows them while a run is going."""
    logger = logging.getLogger("mlr_bench.progress")
    if not any(isinstance(h, _Flushing) for h in logger.handlers):
        handler = _Flushing(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
