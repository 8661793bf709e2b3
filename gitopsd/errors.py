"""The exception tree, nothing else.

Every failure gitopsd reports is classified by whether a retry can help:
``TemporaryError`` (network, throttling, 5xx: try again later) or
``PermanentError`` (bad manifest, bad config, missing ref: a human must act).
The engine records the stage a failure happened in; the exception carries the
message a user reads, which names the file, line or key and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


class GitopsdError(Exception):
    """Base of every error gitopsd raises on purpose."""


class TemporaryError(GitopsdError):
    """A failure a later retry may fix (network, throttling, server errors)."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(GitopsdError):
    """A failure that repeats until a human changes something."""


class ConfigError(PermanentError):
    """The TOML configuration is unreadable or invalid."""


class SourceError(GitopsdError):
    """Base for Git source failures; see the two subclasses."""


class SourceUnavailable(SourceError, TemporaryError):
    """The Git remote could not be reached; a later poll may succeed."""


class SourceRejected(SourceError, PermanentError):
    """The remote refused us or the ref does not exist (bad credentials, missing ref)."""


@dataclass(frozen=True)
class Problem:
    """One located complaint about a manifest: file, line, field path, message."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ManifestError(PermanentError):
    """One or more manifests of an app are invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PlanError(PermanentError):
    """The desired state cannot be reached by an in-place change (e.g. an immutable field)."""


class BackendError(GitopsdError):
    """Base for failures talking to a backend (AWS)."""


class BackendUnavailable(BackendError, TemporaryError):
    """Throttled, timed out or a 5xx from the backend, after our own retries.

    ``maybe_applied`` is True when the request may have taken effect although
    no answer said so (a 5xx, a read timeout, a dropped connection): a write
    must not simply be sent again.
    """

    def __init__(
        self, message: str, *, delay: float | None = None, maybe_applied: bool = False
    ) -> None:
        super().__init__(message, delay=delay)
        self.maybe_applied = maybe_applied


class BackendRejected(BackendError, PermanentError):
    """The backend refused a request as invalid (4xx other than throttling)."""


class ApplyError(GitopsdError):
    """Apply stopped part-way: carries the cause and what was written before it."""

    def __init__(self, message: str, *, cause: BaseException, partial: object) -> None:
        super().__init__(message)
        self.cause = cause
        #: The ``ApplyResult`` of the writes made before the failure.
        self.partial = partial

    @property
    def temporary(self) -> bool:
        return isinstance(self.cause, TemporaryError)


class RolloutFailed(PermanentError):
    """A deployment did not reach a steady state on the new revision."""


class RolloutUnfinished(TemporaryError):
    """A rollout was not judged in time, or another writer replaced it: a later pass looks again."""


class AppLocked(TemporaryError):
    """Another gitopsd process holds the app's lock (it is syncing the same app)."""


class HistoryRewritten(SourceError, PermanentError):
    """The new commit does not descend from the last applied one and the source refuses that."""


class SignatureRejected(SourceRejected):
    """A commit (or tag) is unsigned, or its signature does not verify against the trusted keys.

    ``reason`` says which (see :class:`gitopsd.source.verify.Reason`); ``signer`` is
    the key that signed, as far as it is known ("" when unsigned); ``commit`` the
    commit refused.
    """

    def __init__(self, message: str, *, reason: str, signer: str = "", commit: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.signer = signer
        self.commit = commit


def leaf_error(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from task groups.

    A gitopsd error is preferred over others, so a failed batch of a concurrent
    call reports the classified error rather than a bare group.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner: list[BaseException] = list(exc.exceptions)
        exc = next((e for e in inner if isinstance(e, GitopsdError)), inner[0])
    return exc
