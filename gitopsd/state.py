"""Local files under the state directory, and the per-app writer lock.

gitopsd keeps little state of its own (Git and AWS hold the rest). What must
survive a restart goes through the state store (:mod:`gitopsd.statestore`,
docs/state.md). What stays here is local to the host: the Git cache, the
per-app lock, and per app the last revision of each service that reached a
steady state on what Git asked for (a rollback-target hint: without it the
target comes from ECS's service deployments). The records of older versions
(``agent.json``, ``applied.json``) are read here once, to be carried into the
store. Writes are atomic (write, fsync, rename) and made off the event loop.

One app must have one writer at a time, across processes: a timer's sync and
a manual one, or two agents sharing a state directory. :class:`AppLock` is an
exclusive ``flock`` on ``apps/<app>/lock``; every record of the app is read,
changed and written while it is held, so no update is lost. The kernel drops
the lock when its holder dies (even by SIGKILL), so a crash never leaves an
app locked. The lock file names its holder, for the message another process
prints while it waits.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread

from gitopsd.errors import AppLocked


def write_json_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonRecord:
    """One JSON object stored in one file; read lazily, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged record is as good as none: records are hints, AWS and Git hold the truth.
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))

    def update(self, **values: Any) -> None:
        """Merge ``values`` into the record (call it while holding the app's lock)."""
        data = self.load()
        if all(data.get(k) == v for k, v in values.items()):
            return
        data.update(values)
        self.save(data)

    async def aload(self) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(self.load)

    async def aupdate(self, **values: Any) -> None:
        await anyio.to_thread.run_sync(lambda: self.update(**values))


class AppLock:
    """An exclusive, cross-process lock on one app (``flock`` on ``apps/<app>/lock``)."""

    POLL_START, POLL_MAX = 0.01, 0.25

    def __init__(self, path: Path, app: str) -> None:
        self.path = path
        self.app = app
        self._fd: int | None = None

    def _try(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(
                os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)
            ),
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as far as its file says."""
        try:
            data = json.loads(self.path.read_text("utf-8") or "{}")
        except (OSError, ValueError):
            return "another gitopsd process"
        if not isinstance(data, dict) or "pid" not in data:
            return "another gitopsd process"
        since = data.get("since")
        age = f", for {time.time() - float(since):.0f}s" if isinstance(since, int | float) else ""
        return f"pid {data['pid']} on {data.get('host', '?')} ({data.get('command', '?')}{age})"

    async def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; raise :class:`AppLocked` after."""
        delay = self.POLL_START
        deadline = time.monotonic() + timeout
        try:
            while not self._try():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AppLocked(
                        f"app {self.app!r} is being synced by {self.holder()}; waited "
                        f"{timeout:g}s ([daemon].lock_timeout): try again when it is done"
                    )
                await anyio.sleep(min(delay, left))  # flock has no timeout: poll, backing off
                delay = min(delay * 2, self.POLL_MAX)
        except OSError as exc:
            raise AppLocked(
                f"app {self.app!r}: cannot lock {self.path}: {exc.strerror or exc}; "
                "check that the state directory is writable"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # the only descriptor: closing it drops the flock

    async def __aenter__(self) -> AppLock:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class StateDir:
    """The layout of the state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def git_cache(self) -> Path:
        return self.root / "git"

    def app_dir(self, app: str) -> Path:
        return self.root / "apps" / app

    def last_good(self, app: str) -> JsonRecord:
        """Service name -> task-definition ARN last seen steady on what Git asked for."""
        return JsonRecord(self.app_dir(app) / "last-good.json")

    def applied(self, app: str) -> JsonRecord:
        """The last revision applied: ``{"source", "commit", "at"}``."""
        return JsonRecord(self.app_dir(app) / "applied.json")

    def lock(self, app: str) -> AppLock:
        return AppLock(self.app_dir(app) / "lock", app)
