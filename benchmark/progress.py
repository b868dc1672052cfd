"""Progress a person can see: bars on a terminal (tqdm), and plain lines everywhere.

Library code reports through the logger ``mlr_bench.progress`` (one line per phase and per
epoch, an estimate of the training time after the first steps); the CLI sends that logger's
lines to standard output, so ``run ... > log.txt`` shows them while it runs. Bars are drawn only
when standard error is a terminal.
"""

from __future__ import annotations

import logging

log = logging.getLogger("mlr_bench.progress")

#: training longer than this on a device that is not a GPU gets a warning
SLOW_RUN_S = 3600.0


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


def estimate(seconds_per_step: float, steps_left: int, device_type: str, profile: str) -> float:
    """Log the estimated remaining training time; warn when it is long on a CPU."""
    total = seconds_per_step * steps_left
    log.info("estimated training time: %s (%d steps at %.2f s/step)", human(total), steps_left,
             seconds_per_step)
    if device_type != "cuda" and total > SLOW_RUN_S:
        hint = ("the `cpu` profile (--profile cpu) fits a CPU in about 10 minutes"
                if profile != "cpu" else "use a GPU, or --profile smoke to try the pipeline")
        log.warning("this run would train for about %s on %s, not a GPU: %s", human(total),
                    device_type, hint)
    return total
