"""What a finished pass announces: the typed events plugins and notifiers receive.

:func:`events_from_outcome` turns one :class:`~gitopsd.engine.outcome.Outcome`
into events in a fixed order, so that one failure is one problem event (a
rolled-back rollout is ``rolled_back``, not also ``error``), and a notifier
that alerts on problems sends one alert per failure. :func:`commit_link`
gives the web page of a commit for the forges whose URL form is known.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from gitopsd.events import (
    CHANGES_APPLIED,
    ERROR,
    PRUNED,
    RECONCILE_FINISHED,
    ROLLED_BACK,
    ROLLOUT_COMPLETED,
    ROLLOUT_FAILED,
    Change,
    Event,
    FieldDiff,
    Severity,
)
from gitopsd.model import JSON, MISSING, ResourceChange
from gitopsd.redact import redact, register_counterparts

from .outcome import Outcome, Stage

#: Rollout state -> (kind, severity, reason).
_ROLLOUT_EVENTS: dict[str, tuple[str, Severity, str]] = {
    "COMPLETED": (ROLLOUT_COMPLETED, Severity.INFO, "RolloutCompleted"),
    "ROLLED_BACK": (ROLLED_BACK, Severity.ERROR, "RolledBack"),
    "FAILED": (ROLLOUT_FAILED, Severity.ERROR, "RolloutFailed"),
    # No verdict yet / another writer took over: a later pass looks again.
    "TIMED_OUT": (ROLLOUT_FAILED, Severity.WARNING, "RolloutTimedOut"),
    "REPLACED": (ROLLOUT_FAILED, Severity.WARNING, "RolloutReplaced"),
}

#: The longest value shown for one side of a field diff.
MAX_VALUE = 120

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]{2,}):(?!//)(?P<path>.+)$")


def commit_link(url: str, commit: str) -> str:
    """The web page of ``commit`` in the repository at ``url``, or "" when unknown.

    GitHub, GitLab (also self-hosted ``gitlab.*``), Bitbucket and Gitea/Codeberg URLs
    over https or ssh; any credentials in the URL are dropped.
    """
    if not commit or commit == "worktree":
        return ""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ssh", "git+ssh"):
            return ""
        host = parts.hostname or ""
        path = parts.path
    else:
        m = _SCP_LIKE.match(url)
        if m is None:
            return ""
        host, path = m.group("host"), m.group("path")
    path = path.strip("/").removesuffix(".git")
    if not host or path.count("/") < 1:
        return ""
    if host == "github.com" or host.startswith("github."):
        return f"https://{host}/{path}/commit/{commit}"
    if host == "gitlab.com" or host.startswith("gitlab."):
        return f"https://{host}/{path}/-/commit/{commit}"
    if host == "bitbucket.org":
        return f"https://{host}/{path}/commits/{commit}"
    if host in ("codeberg.org", "gitea.com") or host.startswith("gitea."):
        return f"https://{host}/{path}/commit/{commit}"
    return ""


def _show(value: JSON) -> str:
    if value is MISSING:
        return ""
    text = redact(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def changes_of(resources: Sequence[ResourceChange]) -> tuple[Change, ...]:
    """The field diff of planned changes, as event payload (values redacted, shortened).

    The other version of a secret (a live value gitopsd never read from Git: rotated
    away, or set by another writer) is registered first, so both sides read ``***``."""
    for r in resources:
        for f in r.changes:
            if f.before is not MISSING and f.after is not MISSING:
                register_counterparts(f.before, f.after)
    return tuple(
        Change(
            r.key,
            str(r.action),
            tuple(FieldDiff(f.path, _show(f.before), _show(f.after)) for f in r.changes),
        )
        for r in resources
    )


def events_from_outcome(
    outcome: Outcome,
    *,
    commit_message: str = "",
    link: str = "",
    at: float | None = None,
) -> list[Event]:
    """The events one finished sync pass produced, in order; always ends with
    ``reconcile_finished``.

    - ``changes_applied`` when the pass wrote anything (not on a dry run), with the diff;
    - one ``rollout_completed`` / ``rollout_failed`` / ``rolled_back`` per watched rollout,
      carrying the deployment id;
    - ``pruned`` when prune removed anything;
    - ``error`` when the pass failed and no rollout event already says why (severity
      ``warning`` when a retry may help);
    - ``reconcile_finished`` with the pass's reason.
    """
    when = time.time() if at is None else at
    revision = outcome.revision
    commit = revision.commit if revision is not None else ""
    events: list[Event] = []

    def add(
        kind: str,
        message: str,
        severity: Severity,
        reason: str,
        *,
        stage: Stage | None,
        fields: tuple[str, ...] = (),
        deployment: str = "",
        changes: tuple[Change, ...] = (),
    ) -> None:
        events.append(
            Event(
                kind,
                outcome.app,
                commit,
                message,
                severity,
                reason,
                when,
                fields,
                deployment,
                stage=str(stage) if stage else "",
                commit_message=commit_message,
                link=link,
                source=revision.source if revision is not None else "",
                changes=changes,
            )
        )

    applied = outcome.applied
    writes = applied.applied if applied is not None and not applied.dry_run else ()
    if writes:
        keys = {w.key for w in writes}
        planned = outcome.changeset.pending if outcome.changeset is not None else ()
        add(
            CHANGES_APPLIED,
            f"{len(writes)} change(s) applied: " + ", ".join(f"{w.action} {w.key}" for w in writes),
            Severity.INFO,
            "ChangesApplied",
            stage=Stage.APPLY,
            fields=tuple(w.key for w in writes),
            changes=changes_of([r for r in planned if r.key in keys]),
        )
    deployments = {w.key: w.service_deployment or w.deployment for w in writes}
    problems = 0
    for r in outcome.rollouts:
        kind, severity, reason = _ROLLOUT_EVENTS.get(
            r.state, (ROLLOUT_FAILED, Severity.WARNING, r.state)
        )
        problems += kind != ROLLOUT_COMPLETED
        add(
            kind,
            f"{r.key}: {r.state}: {r.message}" if r.message else f"{r.key}: {r.state}",
            severity,
            reason,
            stage=Stage.VERIFY,
            fields=(r.key,),
            deployment=r.deployment or deployments.get(r.key, ""),
        )
    pruned = outcome.pruned
    removed = pruned.applied if pruned is not None and not pruned.dry_run else ()
    if removed:
        add(
            PRUNED,
            f"{len(removed)} resource(s) pruned: " + ", ".join(w.key for w in removed),
            Severity.INFO,
            "Pruned",
            stage=Stage.APPLY,
            fields=tuple(w.key for w in removed),
        )
    if not outcome.ok and not (outcome.failed_stage is Stage.VERIFY and problems):
        add(
            ERROR,
            outcome.message,
            Severity.WARNING if outcome.temporary else Severity.ERROR,
            outcome.reason,
            stage=outcome.failed_stage,
        )
    add(
        RECONCILE_FINISHED,
        outcome.message or outcome.reason,
        Severity.INFO,
        outcome.reason,
        stage=Stage.NOTIFY,
    )
    return events
