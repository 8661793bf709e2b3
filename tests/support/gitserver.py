"""Real Git servers and repositories for tests, on loopback, with no mocks.

Tests that exercise gitopsd's Git source (and later the end-to-end suite) need
repositories they can change between polls and servers that speak the real
protocols. This module provides both:

* :func:`make_repo` / :class:`GitRepo`: a non-bare work repository driven by the
  git CLI with a fixed author, committer and clock, so commit ids are the same
  on every run; :meth:`GitRepo.publish` copies it to a bare repository (the one
  the servers serve) and :meth:`GitRepo.push` sends later commits there.
* :class:`GitDaemon`: ``git daemon`` serving a directory of bare repositories
  over ``git://``.
* :class:`GitHttpServer`: smart HTTP, a small threaded HTTP server running
  ``git http-backend`` as CGI, with optional HTTP basic auth and a log of the
  requests it served (so a test can assert that a no-op poll only listed refs).
* Servers that are *not* Git, for failure tests: :class:`StaticHttpServer`
  answers every request with one fixed response (a sign-in page), and
  :class:`HangupServer` accepts a connection, reads the request and closes it
  without a word (a busy or restarting ``git daemon`` behind a load balancer).

Every server binds 127.0.0.1 on a free port, waits until it accepts
connections (polling with a deadline) and stops and reaps its processes on
exit.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

GIT = shutil.which("git") or "git"
_EPOCH = 1_700_000_000  # fixed clock for deterministic commit ids
_START_TIMEOUT = 10.0


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for the git CLI that ignores the user's and system's config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_") and k not in ("EMAIL", "XDG_CONFIG_HOME")
    }
    env.update(
        {
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "Test Committer",
            "GIT_COMMITTER_EMAIL": "committer@example.com",
            "LC_ALL": "C",
        }
    )
    if extra:
        env.update(extra)
    return env


def run_git(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run ``git args...`` in ``cwd``; return stripped stdout; raise with stderr on failure."""
    proc = subprocess.run(
        [GIT, *args],
        cwd=cwd,
        env=git_env(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(
    port: int,
    timeout: float = _START_TIMEOUT,
    *,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll until 127.0.0.1:port accepts a connection, or raise TimeoutError.

    With ``process`` (the server that should listen), give up as soon as it exits.
    """
    deadline = time.monotonic() + timeout
    while process is None or process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepted connections on port {port}") from None
            time.sleep(0.01)
    raise TimeoutError(f"the server for port {port} exited with status {process.returncode}")


class GitRepo:
    """A non-bare work repository on branch ``main`` with a deterministic clock.

    Each commit advances the author and committer dates by one second from a
    fixed epoch, so the same sequence of calls yields the same commit ids.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.remote: Path | None = None
        self._clock = _EPOCH

    def git(self, *args: str) -> str:
        """Run a git command in the work tree with the fixed clock."""
        date = f"@{self._clock} +0000"
        return run_git(
            *args, cwd=self.path, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        )

    def write(self, relpath: str, text: str) -> Path:
        """Write a file (creating directories) and stage it."""
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.git("add", "--", relpath)
        return target

    def remove(self, relpath: str) -> None:
        """Delete a file or directory from the work tree and the index."""
        self.git("rm", "-r", "-q", "--", relpath)

    def copy_tree(self, src_dir: Path, dest_relpath: str = ".") -> None:
        """Copy a directory's contents into the work tree at ``dest_relpath`` and stage them."""
        dest = self.path / dest_relpath
        shutil.copytree(src_dir, dest, dirs_exist_ok=True)
        self.git("add", "--", dest_relpath)

    def commit(self, message: str) -> str:
        """Commit what is staged (an empty commit if nothing is); return the commit id."""
        self._clock += 1
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        """The commit id HEAD points at."""
        return self.git("rev-parse", "HEAD")

    def branch(self, name: str, *, checkout: bool = True) -> None:
        """Create a branch at HEAD and (by default) switch to it."""
        if checkout:
            self.git("checkout", "-q", "-b", name)
        else:
            self.git("branch", name)

    def checkout(self, name: str) -> None:
        """Switch to an existing branch."""
        self.git("checkout", "-q", name)

    def tag(self, name: str, *, annotated: bool = False, message: str | None = None) -> str:
        """Tag HEAD; return the id the tag ref points at (the tag object if annotated)."""
        if annotated:
            self._clock += 1
            self.git("tag", "-a", name, "-m", message or f"release {name}")
        else:
            self.git("tag", name)
        return self.git("rev-parse", f"refs/tags/{name}")

    def publish(self, bare: Path) -> Path:
        """Create the bare repository ``bare`` and push every branch and tag to it."""
        bare.parent.mkdir(parents=True, exist_ok=True)
        run_git("init", "-q", "--bare", "-b", "main", str(bare), cwd=bare.parent)
        self.remote = bare
        self.push()
        return bare

    def push(self) -> None:
        """Mirror branches and tags to the published bare repository (force, with deletions)."""
        if self.remote is None:
            raise RuntimeError("publish() the repository before push()")
        self.git(
            "push", "-q", "--force", "--prune", str(self.remote),
            "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*",
        )  # fmt: skip


def make_repo(path: Path) -> GitRepo:
    """Initialise a work repository at ``path`` on branch ``main``."""
    path.mkdir(parents=True, exist_ok=True)
    run_git("init", "-q", "-b", "main", cwd=path)
    return GitRepo(path)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process group we started, then reap its leader."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            stream.close()


class GitDaemon:
    """``git daemon`` serving the bare repositories under ``root`` over git://."""

    def __init__(self, root: Path, *, informative_errors: bool = False) -> None:
        self.root = root
        self.port = 0
        self._informative = informative_errors
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile()  # a pipe nobody reads could fill and block git
        for _ in range(3):  # the free port can be taken between probe and bind
            self.port = free_port()
            args = [
                GIT, "daemon", "--reuseaddr", f"--base-path={self.root}", "--export-all",
                "--listen=127.0.0.1", f"--port={self.port}",
            ]  # fmt: skip
            if self._informative:
                args.append("--informative-errors")
            args.append(str(self.root))
            self._proc = subprocess.Popen(
                args,
                env=git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                start_new_session=True,
            )
            try:
                wait_for_port(self.port, process=self._proc)
                return self
            except TimeoutError:
                _stop(self._proc)
        raise RuntimeError(f"git daemon did not start: {self.log()}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            _stop(self._proc)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        """What ``git daemon`` wrote to stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def url(self, name: str) -> str:
        """``git://127.0.0.1:PORT/name.git`` for the bare repository ``root/name.git``."""
        return f"git://127.0.0.1:{self.port}/{name}.git"


@dataclass(frozen=True)
class HttpRequest:
    """One request the HTTP server answered.

    ``command`` is the upload-pack command of a POST when it can be told from
    the body: ``"ls-refs"`` or ``"fetch"`` (protocol v2), ``"want"`` (protocol
    v0/v1 negotiation), else ``""``.
    """

    method: str
    path: str
    query: str
    status: int
    command: str = ""


def _first_command(head: bytes) -> str:
    """Classify an upload-pack request body from its first pkt-line."""
    if len(head) < 8:
        return ""
    try:
        size = int(head[:4], 16)
    except ValueError:
        return ""
    line = head[4:size] if size >= 4 else b""
    if line.startswith(b"command="):
        return line[len(b"command=") :].strip().decode("ascii", "replace")
    if line.startswith(b"want "):
        return "want"
    return ""


class _CgiHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` for each request; checks basic auth first."""

    server: _GitHttpd
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, or clients stall 40 ms per request

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _authorized(self) -> bool:
        creds = self.server.credentials
        if creds is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user, creds[0]) and hmac.compare_digest(password, creds[1])

    def _body_chunks(self) -> Iterator[bytes]:
        """The request body as it arrives (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk

    def _record(self, status: int, command: str = "") -> None:
        path, _, query = self.path.partition("?")
        with self.server.lock:
            self.server.requests.append(HttpRequest(self.command, path, query, status, command))

    def _handle(self) -> None:
        with self.server.lock:
            self.server.in_flight += 1
        try:
            self._serve()
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _serve(self) -> None:
        if not self._authorized():
            for _ in self._body_chunks():
                pass
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._record(401)
            return
        path, _, query = self.path.partition("?")
        env = git_env(
            {
                "GIT_PROJECT_ROOT": str(self.server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_USER": self.server.credentials[0] if self.server.credentials else "",
            }
        )
        if self.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = self.headers["Content-Length"]
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_AUTHORIZATION", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
                env[name] = value
        proc = subprocess.Popen(
            [GIT, "http-backend"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        head = bytearray()
        gzip = self.headers.get("Content-Encoding", "") != ""

        def feed(stdin: IO[bytes]) -> None:
            try:
                for chunk in self._body_chunks():
                    if len(head) < 64:
                        head.extend(chunk[: 64 - len(head)])
                    stdin.write(chunk)
            except BrokenPipeError:
                pass
            finally:
                stdin.close()

        errors: list[bytes] = []
        writer = threading.Thread(target=feed, args=(proc.stdin,), daemon=True)
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        writer.start()
        reader.start()
        try:
            status = self._relay(proc.stdout)
        finally:
            writer.join()
            proc.stdout.close()
            proc.wait()
            reader.join()
            proc.stderr.close()
        if errors and errors[0]:
            with self.server.lock:
                self.server.errors.append(errors[0].decode("utf-8", "replace"))
        self._record(status, "" if gzip else _first_command(bytes(head)))

    def _relay(self, out: IO[bytes]) -> int:
        """Copy the CGI response to the client as an HTTP/1.1 chunked response."""
        status = 200
        headers: list[tuple[str, str]] = []
        while True:
            line = out.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((key.strip(), value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := out.read1(65536):  # type: ignore[attr-defined]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
        return status


class _GitHttpd(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size: ClassVar[int] = 64  # type: ignore[misc]

    def __init__(self, root: Path, credentials: tuple[str, str] | None) -> None:
        super().__init__(("127.0.0.1", 0), _CgiHandler)
        self.root = root
        self.credentials = credentials
        self.lock = threading.Lock()
        self.requests: list[HttpRequest] = []
        self.errors: list[str] = []
        #: Requests being answered: each is logged once its answer is sent.
        self.in_flight = 0

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet when a client drops a kept-alive connection; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def _serve_in_thread(httpd: ThreadingHTTPServer) -> threading.Thread:
    """Run ``httpd`` on a daemon thread; :func:`_stop_serving` ends it."""
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread


def _stop_serving(httpd: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()
    if thread is not None:
        thread.join(timeout=5)


class GitHttpServer:
    """Smart HTTP (``git http-backend`` as CGI) for the bare repositories under ``root``.

    With ``username`` and ``password`` every request needs matching HTTP basic
    auth; otherwise the server answers 401 with ``WWW-Authenticate``.
    """

    def __init__(
        self, root: Path, *, username: str | None = None, password: str | None = None
    ) -> None:
        self.root = root
        self._credentials = (username, password or "") if username is not None else None
        self._httpd: _GitHttpd | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._httpd = _GitHttpd(self.root, self._credentials)
        self._thread = _serve_in_thread(self._httpd)
        wait_for_port(self.port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _stop_serving(self._httpd, self._thread)

    @property
    def _server(self) -> _GitHttpd:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def url(self, name: str, *, userinfo: str | None = None) -> str:
        """``http://127.0.0.1:PORT/name.git`` (optionally with ``userinfo@`` in the URL)."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}127.0.0.1:{self.port}/{name}.git"

    @property
    def requests(self) -> list[HttpRequest]:
        """A copy of the log of requests answered so far."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def errors(self) -> list[str]:
        """What ``git http-backend`` wrote to stderr, one entry per request that wrote any."""
        with self._server.lock:
            return list(self._server.errors)

    def clear(self, timeout: float = 5.0) -> None:
        """Forget the requests logged so far, once those being answered are logged too (a
        client can read an answer before the server has logged its request)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._server.lock:
                if self._server.in_flight == 0 or time.monotonic() >= deadline:
                    self._server.requests.clear()
                    return
            time.sleep(0.005)


class _StaticHandler(BaseHTTPRequestHandler):
    server: _StaticHttpd
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        status, content_type, body = self.server.response
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _StaticHttpd(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, response: tuple[int, str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _StaticHandler)
        self.response = response


class StaticHttpServer:
    """An HTTP server that answers every request with ``status``, ``content_type`` and ``body``."""

    def __init__(self, body: bytes, *, status: int = 200, content_type: str = "text/html") -> None:
        self._response = (status, content_type, body)
        self._httpd: _StaticHttpd | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._httpd = _StaticHttpd(self._response)
        self._thread = _serve_in_thread(self._httpd)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _stop_serving(self._httpd, self._thread)

    def url(self, path: str) -> str:
        """``http://127.0.0.1:PORT/path``."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{path}"


class HangupServer:
    """A TCP server that reads each request and closes the connection without answering."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, args=(self._sock,), daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # closed by __exit__
                return
            with conn, contextlib.suppress(OSError):
                conn.recv(4096)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
