"""The run folder as a place on disk: one process at a time, files written whole, a clean restart.

* :class:`RunLock` — ``run.lock`` held with ``fcntl.flock`` (the holder's pid written in it): a
  second process on the same folder stops at once and names the holder. The kernel drops the lock
  when the holder exits or is killed, so a crash never leaves a stale lock behind.
* every file a run writes goes through :mod:`tunesmith.atomic` (a temporary name in the same
  folder renamed over the target): a kill leaves the old file or the new one, never a half one.
* :func:`holds_run` — whether a folder holds a run that only ``--resume`` may continue (a
  checkpoint, ``best/`` or ``summary.json``). A run killed before its first checkpoint holds
  nothing worth keeping: it simply starts again.
* :func:`trim_metrics` — on resume, ``metrics.jsonl`` loses the rows after the checkpoint's step
  (they are logged again), so no step appears twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tunesmith.atomic import atomic_write_text
from tunesmith.errors import TunesmithError
from tunesmith.report import METRICS_FILE

try:  # POSIX only; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"

__all__ = [
    "LOCK_FILE",
    "RunFolderError",
    "RunLock",
    "disk_bytes",
    "holds_run",
    "trim_metrics",
]


class RunFolderError(TunesmithError):
    """A run folder cannot be used as asked: held by another process, a resume that would not be
    exact (changed recipe, data, labels, model, world size), damaged or pickled checkpoints."""


class RunLock:
    """An exclusive lock on a run folder for the life of one training process (see module doc)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(
                f"run folder {self.path.parent} is in use by another tunesmith process "
                f"(pid {holder}); wait for it to finish or stop it, then resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock (the file stays: removing it would let two processes lock different files)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holds_run(run_dir: Path) -> bool:
    """A checkpoint, ``best/`` or ``summary.json``: something a fresh start would throw away."""
    ckpts = run_dir / "checkpoints"
    has_ckpt = ckpts.is_dir() and any(
        d.is_dir() and not d.name.endswith(".tmp") for d in ckpts.glob("step-*")
    )
    return has_ckpt or (run_dir / "best").is_dir() or (run_dir / "summary.json").is_file()


def clear_for_fresh_start(run_dir: Path) -> None:
    """Remove what a run killed before its first checkpoint left (its metrics, half-written
    checkpoints) so that a new start does not append to it."""
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def trim_metrics(run_dir: Path, step: int) -> int:
    """Keep the ``metrics.jsonl`` rows of steps up to ``step`` (a resumed run logs the later ones
    again) and drop the end-of-run rows (``final_*``: logged again at the end). Returns the
    number of rows removed. Unreadable lines (a crash mid-write) are dropped too."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            keep = row["step"] <= step and not str(row.get("split", "")).startswith("final_")
        except (ValueError, TypeError, KeyError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += bool(line.strip())
    if dropped:
        atomic_write_text(path, "".join(x + "\n" for x in kept))
    return dropped


def disk_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (what the run occupies on disk)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while walking
                pass
    return total
