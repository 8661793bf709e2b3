"""The servers a benchmark run needs, on loopback: the local ECS endpoint and Git.

The local endpoint is :class:`gitopsd.local_aws.testing.LocalAws` (``gitopsd
local-aws`` in a subprocess on a free port). Git is served by the test suite's
own servers (tests/support/gitserver.py): ``git daemon`` for git:// and ``git
http-backend`` behind a small threaded HTTP server for smart HTTP. A
:class:`ByteCounter` is a TCP relay placed in front of either server so that the
bytes a client moves are counted the same way for gitopsd and the git CLI.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
#: The bytecode cache of the processes the bench runs (see :func:`aws_env`).
PYCACHE = ROOT / "bench" / ".pycache"
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.gitserver import (  # noqa: E402  (tests/ is put on the path just above)
    GitDaemon,
    GitHttpServer,
    GitRepo,
    git_env,
    make_repo,
    run_git,
)

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws  # noqa: E402

__all__ = [
    "DUMMY_ACCESS_KEY",
    "DUMMY_SECRET_KEY",
    "ByteCounter",
    "GitDaemon",
    "GitHttpServer",
    "GitRepo",
    "LocalAws",
    "aws_env",
    "git_env",
    "make_repo",
    "run_git",
]


def aws_env(base: dict[str, str], endpoint_url: str) -> dict[str, str]:
    """An environment pointing AWS SDKs and tools at the local endpoint."""
    env = {k: v for k, v in base.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint_url,
    )
    # Every measured Python process (gitopsd, the floor script, ecs-deploy) runs with a
    # bytecode cache, as an installed package does (pip compiles at install time): without
    # one (PYTHONDONTWRITEBYTECODE, or a venv installed without compiling) each process
    # compiles all it imports again, which is not what a user's start-up costs.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


class ByteCounter:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target counting the bytes each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0  # client -> server
        self.received = 0  # server -> client
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = 0

    @property
    def total(self) -> int:
        with self._lock:
            return self.sent + self.received

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done = threading.Barrier(2, action=functools.partial(_close, client, upstream))
            for args in ((client, upstream, True, done), (upstream, client, False, done)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, outbound: bool, done: threading.Barrier
    ) -> None:
        """Copy one direction; pass a half-close on (git clients half-close after "done")."""
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
                with self._lock:
                    if outbound:
                        self.sent += len(chunk)
                    else:
                        self.received += len(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        try:
            done.wait(timeout=600)
        except threading.BrokenBarrierError:
            _close(src, dst)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        sock.close()
