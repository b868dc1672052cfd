"""The layout of a results folder, in one place, and the lock one run holds in it.

    <out>/<run id>.json                 the record (the source of truth)
    <out>/<run id>.ranks.json           its ranked lists
    <out>/<run id>.model.pt             its kept weights (run --keep-model)
    <out>/<run id>.sr.png               an SR method's picture strip
    <out>/.checkpoints/<run id>.pt      the resumable checkpoint (gone once the record is written)
    <out>/.checkpoints/<run id>.lock    the lock of the process running it
    <out>/.checkpoints/<run id>.failed  why a suite cell's last attempt failed
    <out>/logs/<run id>.log             a cell's log under suite --launcher local
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.atomic import stale_temps
from benchmark.core.errors import UserError

CHECKPOINTS = ".checkpoints"


@dataclass(frozen=True)
class RunPaths:
    """Where the files of run ``run_id`` lie in the results folder ``out``."""

    out: Path
    run_id: str

    @property
    def record(self) -> Path:
        return self.out / f"{self.run_id}.json"

    @property
    def ranks(self) -> Path:
        return self.out / f"{self.run_id}.ranks.json"

    @property
    def model(self) -> Path:
        return self.out / f"{self.run_id}.model.pt"

    @property
    def strip(self) -> Path:
        return self.out / f"{self.run_id}.sr.png"

    @property
    def checkpoints(self) -> Path:
        return self.out / CHECKPOINTS

    @property
    def checkpoint(self) -> Path:
        return self.checkpoints / f"{self.run_id}.pt"

    @property
    def lock(self) -> Path:
        return self.checkpoints / f"{self.run_id}.lock"

    @property
    def failed(self) -> Path:
        return self.checkpoints / f"{self.run_id}.failed"

    @property
    def log(self) -> Path:
        return self.out / "logs" / f"{self.run_id}.log"

    def others_on_other_data(self, prefix: str) -> list[str]:
        """Records and checkpoints of this run on other data (the same prefix, another data
        fingerprint)."""
        found = [*self.out.glob(f"{prefix}__data*.json"),
                 *self.checkpoints.glob(f"{prefix}__data*.pt")]
        return sorted(p.name for p in found if p not in (self.record, self.checkpoint))

    def remove_stale_temps(self) -> None:
        """Temp files a killed process left beside the record and the checkpoint (the caller
        holds the run's lock)."""
        for stale in (stale_temps(self.checkpoints, self.checkpoint.name)
                      + stale_temps(self.out, self.record.name)):
            stale.unlink(missing_ok=True)


def rescue_folder() -> Path:
    """Where a record goes when ``--out`` cannot take it: $MLRBENCH_RESCUE, else the temp dir."""
    return Path(os.environ.get("MLRBENCH_RESCUE")
                or Path(tempfile.gettempdir()) / "mlr-bench-rescue")


@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[Path]:
    """One process per run id and results folder: a second one exits 2 naming the lock (it does
    not wait: the first may train for hours). The lock file is removed when the run ends."""
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    path = paths.lock
    fh = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not path.exists() or os.fstat(fh.fileno()).st_ino != os.stat(path).st_ino:
                raise BlockingIOError  # the holder removed it as we opened it: it just ended
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise UserError(f"run {paths.run_id} is being run by {holder} into {paths.out} "
                            f"(lock {path}); wait for it to finish, or use another --out"
                            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)  # still holding the lock
    finally:
        fh.close()


def is_locked(path: Path) -> bool:
    """A live process holds this lock (``run_lock``)."""
    if not path.is_file():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False
