"""Command line of mlr-bench: ``python -m benchmark <command> --help``.

One module per command (``benchmark/cli/<command>.py``), each with ``register(subparsers)``
and ``run(args)``; this module only registers them and dispatches. No command imports torch
before its ``run``: ``--help`` of every command is fast.

Bad input prints one line and exits 2; every exit code is in ``benchmark.core.errors``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from benchmark.cli import (
    check_data,
    evaluate,
    evaluate_checkpoint,
    list_cmd,
    preview,
    profile,
    report,
    reproduce,
    run,
    split,
    suite,
    synth,
    visrank,
)
from benchmark.cli.common import print_summary
from benchmark.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_WRITE_FAILED,
    UserError,
    WriteError,
)
from benchmark.core.progress import show_progress_lines

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EPILOG = ("Docs: docs/ (README.md links each page). Every command writes its results as JSON; "
          "nothing is downloaded. Exit status: 0 done, 1 report --check found differences, 2 bad "
          "input, a run that cannot go on, or a report --check with nothing on real data to check"
          " (one line says why), 3 a file could not be written (a run's record then goes to "
          "$MLRBENCH_RESCUE or the temp folder), 4 an internal error (a bug: one line, the "
          "traceback in a log file under $MLRBENCH_LOGS or the temp folder, or on screen with "
          "-v), 130 interrupted.")
#: errors of an OSError that mean a write could not be done (a full disk, a quota, a read-only
#: file system), whatever operation met them
WRITE_ERRNOS = {28, 122, 30}  # ENOSPC, EDQUOT, EROFS
#: the commands, in the order --help lists them
COMMANDS = (list_cmd, run, profile, suite, report, reproduce, synth, check_data, split,
            evaluate, evaluate_checkpoint, visrank, preview)


def check_datasets_package() -> None:
    """Stop with one clear line when ``import datasets`` is not mlr-bench's package.

    Hugging Face's ``datasets`` has the same top-level name; whichever comes first on
    ``sys.path`` wins. The package is found, not imported (importing it imports torch).
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("datasets")
    except (ImportError, ValueError) as exc:
        raise UserError(f"'import datasets' failed ({exc}); mlr-bench's datasets package should "
                        f"be importable (run from {PROJECT_ROOT} or pip install it)") from exc
    if spec is None:
        raise UserError("no package 'datasets' is importable; mlr-bench's datasets package "
                        f"should be (run from {PROJECT_ROOT} or pip install it)")
    origin = Path(spec.origin) if spec.origin else None
    try:
        ours = origin is not None and "MLR_BENCH = True" in origin.read_text()
    except OSError:
        ours = False
    if not ours:
        where = spec.origin or "an unknown location"
        raise UserError(
            f"'import datasets' resolves to {where}, not mlr-bench's datasets package "
            "(probably Hugging Face 'datasets' in this environment); use a separate virtual "
            f"environment for mlr-bench or run from the project root {PROJECT_ROOT}"
        )


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="mlr-bench: cross-resolution (MLR) person re-identification benchmark.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


#: longest error line printed; longer messages are cut in the middle
MESSAGE_LIMIT = 600


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """An error message as one line of at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit // 2 - 20
    return f"{text[:keep]} ... ({len(text) - 2 * keep} characters left out) ... {text[-keep:]}"


def internal_error_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected exception to a log file; its path, or None."""
    import tempfile
    import time
    import traceback

    folder = Path(os.environ.get("MLRBENCH_LOGS") or Path(tempfile.gettempdir()) / "mlr-bench-logs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"python -m benchmark {' '.join(sys.argv[1:])}\n\n"
                        + "".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    try:
        check_datasets_package()
        parser = build_parser()
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    show_progress_lines()
    previous = signal.signal(signal.SIGTERM, _terminate)  # preemption: clean up as Ctrl-C does
    try:
        if getattr(args, "numerics", None) is not None or getattr(args, "threads", None):
            from benchmark.core import numerics  # before any command imports torch

            numerics.apply(args.numerics or "native", args.threads)
        return args.func(args)
    except UserError as exc:
        record = getattr(exc, "record", None)
        if record is not None:  # the run finished but its record could not be written
            print_summary(record)
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except WriteError as exc:  # a write that failed (full disk, permissions): nothing half-written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: cannot write {where}{one_line(exc.strerror or exc)} (files are written "
              "atomically: what was there before is intact)", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        return 0
    except OSError as exc:  # a file or folder that cannot be used as given
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{one_line(exc.strerror or exc)}", file=sys.stderr)
        return EXIT_WRITE_FAILED if exc.errno in WRITE_ERRNOS else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback kept
        if args.verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        log_file = internal_error_log(exc)
        where = (f"the traceback is in {log_file}" if log_file else "run with -v for the traceback")
        print(f"internal error: {type(exc).__name__}: {one_line(exc, 300)} (a bug in mlr-bench, "
              f"please report it; {where})", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
