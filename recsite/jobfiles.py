"""Files through which a background job and the web pages talk.

An import runs inside one long database transaction and training runs in another process,
so a job's progress, heartbeat and cancel requests go through small files in the job's own
folder: every process on the machine sees them at once, and writing them never waits on a
database lock (SQLite allows one writer) or hides inside an uncommitted transaction.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

# A running job writes progress at least every few seconds; this long without any means
# its worker is gone (killed or crashed).
STALE_AFTER_SECONDS = 180
PROGRESS_FILE = "progress.json"
CANCEL_FILE = "cancel"
LOG_FILE = "log.txt"


class JobFiles:
    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    @property
    def progress_path(self) -> Path:
        return self.folder / PROGRESS_FILE

    @property
    def cancel_path(self) -> Path:
        return self.folder / CANCEL_FILE

    def reset(self, *other_files: str) -> None:
        """Create the folder and remove what a job with the same id left (a restored DB)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in (PROGRESS_FILE, CANCEL_FILE, *other_files):
            (self.folder / name).unlink(missing_ok=True)

    def write_progress(self, *, phase: str, fraction: float, **extra) -> None:
        payload = {"phase": phase, "fraction": round(fraction, 4), **extra, "at": time.time()}
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.progress_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload))
        temporary.replace(self.progress_path)  # atomic: readers never see half a file

    def read_progress(self) -> dict:
        try:
            return json.loads(self.progress_path.read_text())
        except (OSError, ValueError):
            return {}

    def request_cancel(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cancel_path.touch()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def raise_if_cancelled(self, exception: type[Exception]) -> None:
        """Raise ``exception`` when the cancel flag is set (the job checks between steps)."""
        if self.cancel_requested:
            raise exception

    def is_stale(self, stale_after: float = STALE_AFTER_SECONDS) -> bool:
        """No progress written for ``stale_after`` seconds."""
        return time.time() - self.read_progress().get("at", 0) > stale_after

    def write_outcome(self, status: str, **extra) -> None:
        """The last progress of a finished job: its status as the phase, and 1.0 when it
        succeeded or the fraction it had reached otherwise. A full disk is not an error here:
        the job's status in the database already says how it ended."""
        fraction = 1.0 if status == "succeeded" else self.read_progress().get("fraction", 0)
        with contextlib.suppress(OSError):
            self.write_progress(phase=status, fraction=fraction, **extra)

    def append_log(self, message: str, name: str = LOG_FILE) -> None:
        """Add ``[HH:MM:SS] message`` (UTC) to the job's log; a full disk loses the line."""
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / name).open("a", encoding="utf-8") as handle:
                handle.write(f"[{stamp}] {message}\n")

    def read_text(self, name: str = LOG_FILE) -> str:
        """A file of the job's folder (the log by default); "" when it is missing."""
        try:
            return (self.folder / name).read_text(encoding="utf-8")
        except OSError:
            return ""
