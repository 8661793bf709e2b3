"""Open a dulwich client for a source URL, and translate its failures into gitopsd errors.

Two jobs that both need to know the transport:

* building the client: local paths and ``file://`` (``git upload-pack`` when the
  ``git`` binary is there: dulwich's in-process local client walks the whole
  history on every fetch), ``git://`` (with a socket timeout dulwich does not
  offer), smart HTTP(S) with basic auth and a request timeout (and fewer round
  trips than dulwich makes: see :class:`_SmartHttpClient`), and SSH through
  the ``ssh`` binary with our own command line;
* classifying what the client raised: whether a retry may help
  (:class:`~gitopsd.errors.SourceUnavailable`: refused, unresolvable, timed out,
  5xx) or a human must act (:class:`~gitopsd.errors.SourceRejected`: bad
  credentials, no repository there, not a Git server), with a message that
  names the source and its redacted URL and never contains a secret: server
  text always goes through the credentials' scrubber, and is shortened.
"""

from __future__ import annotations

import re
import select
import shutil
import socket
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import urllib3
from dulwich.client import (
    DEFAULT_REF_PREFIX,
    GitClient,
    HttpGitClient,
    HTTPProxyUnauthorized,
    HTTPUnauthorized,
    LocalGitClient,
    SSHGitClient,
    SubprocessGitClient,
    TCPGitClient,
    TraditionalGitClient,
    build_ls_refs_request_v2,
    default_urllib3_manager,
    extract_object_format_from_capabilities,
    read_pkt_refs_v2,
)
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.protocol import (
    DEFAULT_GIT_PROTOCOL_VERSION_FETCH,
    DEFAULT_GIT_PROTOCOL_VERSION_SEND,
    TCP_GIT_PORT,
    Protocol,
    pkt_line,
)
from dulwich.refs import Ref

from gitopsd.errors import SourceError, SourceRejected, SourceUnavailable
from gitopsd.source.auth import SCP_LIKE, Credentials, Transport, strip_userinfo


class _TrackingPoolManager(urllib3.PoolManager):
    """urllib3 pool that can close every response it handed out.

    Dulwich streams responses (``preload_content=False``) and does not close
    one it raises about (a 401, a failed read), which leaves its connection
    open until garbage collection; :meth:`close` closes them all.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No read retries: a timed-out poll is retried by the next poll, and a
        # worker thread abandoned on timeout should end after one socket timeout.
        kwargs.setdefault("retries", urllib3.Retry(total=5, connect=1, read=0, redirect=5))
        super().__init__(*args, **kwargs)
        self.responses: list[urllib3.BaseHTTPResponse] = []

    def urlopen(  # type: ignore[override]  # urllib3's own PoolManager does the same
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        response = super().urlopen(method, url, redirect=redirect, **kw)
        self.responses.append(response)
        close = response.close

        def finish_then_close() -> None:
            # Dulwich stops reading at Git's flush-pkt, before the end of the HTTP
            # body (a chunked response's last chunk); closing such a response closes
            # its connection. Reading the rest (a few bytes) returns the connection
            # to the pool instead, so the next request (and the next poll) reuses it.
            with suppress(Exception):
                if response.connection is not None and not response.closed:
                    response.read(_DRAIN_LIMIT)
            close()

        response.close = finish_then_close  # type: ignore[method-assign]
        return response

    def settle(self) -> None:
        """Forget the responses of a finished exchange, keeping the pool's idle connections."""
        while self.responses:
            with suppress(Exception):
                self.responses.pop().close()

    def close(self) -> None:
        self.settle()
        self.clear()


_DRAIN_LIMIT = 64 * 1024
"""At most this much of a response's unread rest is read to keep its connection for reuse."""

_Discovery = tuple[dict[Ref, Any], set[bytes], str, dict[Ref, Ref], dict[Ref, Any]]
"""What dulwich's ``_discover_references`` returns: refs, capabilities, URL, symrefs, peeled."""


class _TrackingProxyManager(_TrackingPoolManager, urllib3.ProxyManager):
    """The same, through an HTTP(S) proxy (``https_proxy`` and friends)."""


class _SmartHttpClient(HttpGitClient):
    """Smart-HTTP client that makes a poll one request and a fetch two.

    Dulwich asks for the server's capabilities (``GET info/refs``) before every
    protocol v2 command, so a listing costs two requests, and a fetch lists the
    refs again (all of them: ``refs/pull/*`` too) before asking for the pack.
    ``git http-backend``, GitHub and GitLab serve each request with a new
    process, so requests, not bytes, are what a poll costs. This client

    * remembers the capabilities of a protocol v2 server (they describe the
      server, not the repository's state) and sends later ``ls-refs`` straight
      to ``POST git-upload-pack``; a server that no longer answers that way
      (another Git server behind the URL, a sign-in page) is asked again the
      usual way, which also tells a non-Git answer from a Git one;
    * lets the fetch that follows a listing use that listing
      (:meth:`use_listing`) rather than listing again.

    Credentials and their scope (sent only to the URL's origin) are dulwich's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._v2: tuple[str, set[bytes], str] | None = None  # asked URL, capabilities, URL
        self._listing: _Discovery | None = None  # the last get_refs, for the fetch after it
        self._pending: _Discovery | None = None  # what the next fetch uses instead of listing
        self._listing_now = False
        #: Requests this client sent (for tests and the benchmark).
        self.requests = 0

    def use_listing(self) -> None:
        """Let the next fetch use the refs the last :meth:`get_refs` listed."""
        self._pending, self._listing = self._listing, None

    def get_refs(
        self,
        path: str | bytes,
        protocol_version: int | None = None,
        ref_prefix: Sequence[bytes] | None = None,
    ) -> Any:
        self._listing = self._pending = None
        self._listing_now = True
        try:
            return super().get_refs(path, protocol_version=protocol_version, ref_prefix=ref_prefix)
        finally:
            self._listing_now = False

    def _http_request(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return super()._http_request(*args, **kwargs)

    def _discover_references(
        self,
        service: bytes,
        base_url: str,
        protocol_version: int | None = None,
        ref_prefix: Sequence[bytes] | None = None,
    ) -> _Discovery:
        upload = service == b"git-upload-pack" and protocol_version in (None, 2)
        if upload and self._pending is not None and not self._listing_now:
            found, self._pending = self._pending, None
            self.protocol_version = 2 if self._v2 is not None else 0
            return found
        found_v2: _Discovery | None = None
        if upload and self._v2 is not None and self._v2[0] == base_url:
            try:
                found_v2 = self._ls_refs(self._v2[2], self._v2[1], ref_prefix)
            except (GitProtocolError, NotGitRepository, ValueError, AssertionError) as exc:
                if exc.__cause__ is not None:  # the network failed: asking again would wait again
                    raise
                self._v2 = None  # the server changed: discover it again
        if found_v2 is not None:
            found = found_v2
        else:
            found = super()._discover_references(
                service, base_url, protocol_version=protocol_version, ref_prefix=ref_prefix
            )
            if upload and self.protocol_version == 2 and not self.dumb:
                self._v2 = (base_url, found[1], found[2])
        if self._listing_now:
            self._listing = found
        return found

    def _ls_refs(
        self, url: str, capabilities: set[bytes], ref_prefix: Sequence[bytes] | None
    ) -> _Discovery:
        """``ls-refs`` sent straight to ``POST git-upload-pack`` of a known protocol v2 server."""
        object_format = extract_object_format_from_capabilities(capabilities)
        prefixes = list(ref_prefix) if ref_prefix is not None else DEFAULT_REF_PREFIX
        command, arguments = build_ls_refs_request_v2(capabilities, object_format, prefixes)
        body = b"".join(
            [pkt_line(p) for p in command] + [b"0001"] + [pkt_line(p) for p in arguments]
        )
        self.protocol_version = 2
        resp, read = self._smart_request("git-upload-pack", url, body + b"0000")
        try:
            refs, symrefs, peeled = read_pkt_refs_v2(
                Protocol(read, lambda data: None).read_pkt_seq()
            )
        finally:
            resp.close()
        return dict(refs), capabilities, url, symrefs, dict(peeled)


class _TimeoutTCPGitClient(TCPGitClient):
    """``git://`` client whose socket has a timeout (dulwich's blocks forever on a silent server).

    The fetch runs in a worker thread that ``anyio.fail_after`` can abandon but
    not stop; the socket timeout makes sure such a thread ends and releases the
    cache soon after. Dulwich leaves a connection open when a command fails
    half-way, so the client remembers its connections and :meth:`close` closes
    them.
    """

    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port=port)
        self._timeout = timeout
        self._opened: list[Protocol] = []

    def close(self) -> None:
        _close_all(self._opened)
        super().close()

    def _connect(
        self,
        cmd: bytes,
        path: str | bytes,
        protocol_version: int | None = None,
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        if not isinstance(path, bytes):
            path = path.encode(self._remote_path_encoding)
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = sock.makefile("rb", -1)
        wfile = sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def shutdown_write() -> None:
            wfile.flush()
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        def can_read() -> bool:
            return bool(select.select([sock.fileno()], [], [], 0)[0])

        proto = Protocol(
            rfile.read,
            wfile.write,
            close,
            report_activity=self._report_activity,
            shutdown_write=shutdown_write,
        )
        if path.startswith(b"/~"):
            path = path[1:]
        if cmd == b"upload-pack":
            self.protocol_version = (
                DEFAULT_GIT_PROTOCOL_VERSION_FETCH if protocol_version is None else protocol_version
            )
        else:
            self.protocol_version = DEFAULT_GIT_PROTOCOL_VERSION_SEND
        extra = b"\0\0version=%d\0" % self.protocol_version
        if cmd != b"upload-pack" or self.protocol_version != 2:
            extra = b""
        self._opened.append(proto)
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + extra)
        return proto, can_read, None


if TYPE_CHECKING:
    _ProcessClient = TraditionalGitClient
else:
    _ProcessClient = object


class _ClosesProcesses(_ProcessClient):
    """Mixin for clients that run a process per connection: close (and reap) them all."""

    _opened: list[Protocol]

    def _connect(
        self,
        cmd: bytes,
        path: str | bytes,
        protocol_version: int | None = None,
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        proto, can_read, stderr = super()._connect(cmd, path, protocol_version)
        self._opened.append(proto)
        return proto, can_read, stderr

    def close(self) -> None:
        _close_all(self._opened)
        super().close()


class _ClosingSSHGitClient(_ClosesProcesses, SSHGitClient):
    """SSH client that closes (and reaps) every ``ssh`` process it started on :meth:`close`."""

    def __init__(
        self, host: str, port: int | None, username: str | None, ssh_command: str | None
    ) -> None:
        super().__init__(host, port=port, username=username, ssh_command=ssh_command)
        self._opened = []


class _ClosingSubprocessGitClient(_ClosesProcesses, SubprocessGitClient):
    """``git upload-pack`` on a local repository, closing (and reaping) it on :meth:`close`.

    Dulwich's in-process :class:`LocalGitClient` offers the server side every
    commit of the cache as a "have" before answering, so each fetch costs time
    in proportion to the history; ``git upload-pack`` stops negotiating early.
    """

    def __init__(self, git: str) -> None:
        super().__init__()
        self.git_command = [git]
        self._opened = []


def _close_all(protocols: list[Protocol]) -> None:
    while protocols:
        with suppress(Exception):
            protocols.pop().close()


@dataclass(frozen=True)
class Remote:
    """A dulwich client, the path to pass it, and how to talk to it.

    ``fetch_protocol`` is the protocol version for fetches: 0 for ``git://``,
    SSH and ``git upload-pack``, where dulwich's protocol v2 negotiation sends
    every "have" before the server may answer (slow on long histories), else
    the client default. Ref
    listing always uses v2 so the server filters refs by prefix (GitHub
    advertises every ``refs/pull/*`` in v0).
    """

    client: GitClient
    path: str
    transport: Transport
    fetch_protocol: int | None


def open_remote(
    url: str,
    transport: Transport,
    creds: Credentials,
    timeout: float,
    *,
    git: str | None = "",
) -> Remote:
    """A client for ``url``; raise ``ValueError`` if the URL cannot be parsed.

    ``git`` is the git binary for local remotes (``""``: look it up on
    ``PATH``; None: use dulwich's slower in-process client).
    """
    if transport is Transport.LOCAL:
        path = unquote(urlsplit(url).path) if url.lower().startswith("file://") else url
        binary = shutil.which("git") if git == "" else git
        if binary is None:
            return Remote(LocalGitClient(), path, transport, None)
        return Remote(_ClosingSubprocessGitClient(binary), path, transport, 0)
    if transport is Transport.GIT:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("a git:// URL needs a host")
        client: GitClient = _TimeoutTCPGitClient(
            parts.hostname, parts.port or TCP_GIT_PORT, timeout
        )
        return Remote(client, parts.path, transport, 0)
    if transport is Transport.HTTP:
        base = strip_userinfo(url)
        parts = urlsplit(base)
        if not parts.hostname:
            raise ValueError("an http(s) URL needs a host")
        pool = default_urllib3_manager(
            None,
            pool_manager_cls=_TrackingPoolManager,
            proxy_manager_cls=_TrackingProxyManager,
            base_url=base,
            timeout=timeout,
        )
        client = _SmartHttpClient(
            base,
            pool_manager=pool,
            username=creds.username,
            password=creds.password,
            timeout=timeout,
        )
        return Remote(client, parts.path, transport, None)
    # SSH: ssh://[user@]host[:port]/path or scp-like [user@]host:path
    if "://" in url:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("an ssh URL needs a host")
        host, port, user, path = parts.hostname, parts.port, parts.username, parts.path
        if path.startswith("/~"):
            path = path[1:]
    else:
        m = SCP_LIKE.match(url)
        if m is None:
            raise ValueError("not an ssh URL")
        host, port, user, path = m["host"], None, m["user"], m["path"]
    client = _ClosingSSHGitClient(host, port, user, creds.ssh_command)
    return Remote(client, path, transport, 0)


def close_remote(remote: Remote) -> None:
    """Release the client's connections and processes, including those a failure left open."""
    remote.client.close()
    pool = getattr(remote.client, "pool_manager", None)
    if isinstance(pool, _TrackingPoolManager):
        pool.close()


def keeps_connections(remote: Remote) -> bool:
    """Whether ``remote`` is worth keeping between polls (HTTP: its pool of open connections)."""
    return isinstance(remote.client, _SmartHttpClient)


def settle_remote(remote: Remote) -> None:
    """After a successful exchange: forget its responses, keep the idle connections for the next."""
    pool = getattr(remote.client, "pool_manager", None)
    if isinstance(pool, _TrackingPoolManager):
        pool.settle()


def use_listing(remote: Remote) -> None:
    """Let the next fetch on ``remote`` use the refs just listed (HTTP: saves two requests)."""
    if isinstance(remote.client, _SmartHttpClient):
        remote.client.use_listing()


_HTTP_STATUS = re.compile(r"unexpected http resp (\d{3})")
_NO_REPOSITORY = (
    "does not appear to be a git repository",
    "repository not found",
    "no such repository",
)
_SSH_REJECTED = (
    "permission denied",
    "host key verification failed",
    "no matching host key",
    "could not read from remote repository",
    "detected dubious ownership",
    "no such file or directory",
    "not found",
)
_REPO_MISSING = ("access denied or repository not exported", "no such repository")
_MAX_DETAIL = 300  # characters of server text in a message (an HTML page can be long)


def _detail(exc: BaseException) -> str:
    """The most useful one-line description of a failure."""
    cause = exc.__cause__
    reason = getattr(cause, "reason", None)  # urllib3 MaxRetryError
    if reason is not None:
        text = str(reason)
        # "HTTPConnection(host=..., port=...): Failed to establish a new connection: ..."
        text = text.split("): ", 1)[-1]
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.replace("\r", "").split())


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3].rstrip() + "..."


def not_smart_http(what: str, url_key: str) -> SourceRejected:
    """The error for an HTTP answer that is not Git's (a sign-in page, a web UI, a proxy)."""
    return SourceRejected(
        f"{what}: the server answered, but not as a Git smart-HTTP endpoint "
        f"(a sign-in page or a web page?); check {url_key}"
    )


def classify(
    exc: BaseException,
    what: str,
    creds: Credentials,
    url_key: str,
    *,
    transport: Transport | None = None,
) -> SourceError:
    """Turn an exception from dulwich into ``SourceUnavailable`` or ``SourceRejected``.

    ``what`` names the source and its redacted URL; ``url_key`` is the config
    key to fix for a wrong URL (``sources[platform].url``). Server text in the
    message is scrubbed of the credentials' secrets, then shortened.
    """
    if isinstance(exc, SourceError):
        return exc
    detail = _shorten(creds.scrub(_detail(exc)))
    if isinstance(exc, HTTPUnauthorized):
        return SourceRejected(f"{what}: authentication failed (HTTP 401); {creds.hint}")
    if isinstance(exc, HTTPProxyUnauthorized):
        return SourceRejected(
            f"{what}: the HTTP proxy refused the request (HTTP 407); check the proxy credentials"
        )
    if isinstance(exc, NotGitRepository):
        return SourceRejected(f"{what}: no Git repository at this URL; check {url_key}")
    if isinstance(exc, HangupException):
        lowered = detail.lower()
        if "could not resolve hostname" in lowered or "connection refused" in lowered:
            return SourceUnavailable(f"{what}: cannot reach the remote: {detail}")
        if any(marker in lowered for marker in _NO_REPOSITORY):
            hint = f"; {creds.hint}" if creds.hint else ""
            return SourceRejected(
                f"{what}: no Git repository at this URL, or no access to it: {detail}; "
                f"check {url_key}{hint}"
            )
        if any(marker in lowered for marker in _SSH_REJECTED):
            hint = creds.hint or f"check {url_key}"
            return SourceRejected(f"{what}: the server refused access: {detail}; {hint}")
        if not exc.stderr_lines:
            # An overloaded or restarting server hangs up the same way as `git daemon`
            # does for a repository it does not export: retry, but say both.
            return SourceUnavailable(
                f"{what}: the server closed the connection without answering (busy or "
                f"restarting?); if this persists, check that the repository exists and is "
                f"exported: {url_key}"
            )
        return SourceUnavailable(f"{what}: the connection failed: {detail}")
    if isinstance(exc, GitProtocolError):
        status = _HTTP_STATUS.search(str(exc))
        if status:
            code = int(status.group(1))
            if code == 403:
                return SourceRejected(
                    f"{what}: authentication failed: access denied (HTTP 403); {creds.hint}"
                )
            if code in (404, 410):
                return SourceRejected(f"{what}: no Git repository at this URL; check {url_key}")
            return SourceUnavailable(f"{what}: the server answered HTTP {code}")
        if any(marker in detail.lower() for marker in _REPO_MISSING):
            return SourceRejected(
                f"{what}: the server says: {detail}; check {url_key} "
                "(the repository does not exist or is not exported)"
            )
        if exc.__cause__ is not None:  # urllib3 connection or timeout failure
            return SourceUnavailable(f"{what}: cannot reach the remote: {detail}")
        return SourceUnavailable(f"{what}: the remote failed: {detail}")
    if isinstance(exc, TimeoutError):
        return SourceUnavailable(f"{what}: the remote did not answer in time")
    if isinstance(exc, OSError):
        return SourceUnavailable(f"{what}: cannot reach the remote: {detail}")
    if transport is Transport.HTTP and isinstance(exc, ValueError | AssertionError):
        return not_smart_http(what, url_key)  # dulwich's parse error quotes the page: drop it
    return SourceUnavailable(
        f"{what}: the remote's answer could not be read: {type(exc).__name__}: {detail}"
    )
