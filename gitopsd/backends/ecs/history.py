"""An app's deployment history, derived from what AWS keeps, and rollback targets in it.

Nothing here reads gitopsd's state directory: a fresh machine sees the same
history. ECS keeps every service deployment for 90 days (the service
deployments API); each names its target and source *service revisions*, and
each revision names its task definition, whose ``gitopsd:revision`` tag is the
Git commit gitopsd registered it for. Per service of the app:

- ListServiceDeployments, newest first, one page of up to ``limit``;
- DescribeServiceDeployments for those (20 per call, all services together);
- DescribeServiceRevisions for their target, source and rollback revisions
  (20 per call);
- DescribeTaskDefinition with tags for each target task definition, through
  :meth:`EcsClient.task_definition` (cached by ARN: task definitions are
  immutable, so a second look costs nothing).

An endpoint without the API (moto answers HTTP 500; an account or region may
refuse it) is detected on the first call, as :mod:`rollout` does, and the
history falls back to what DescribeServices shows: the service's current
``deployments[]`` only, which each entry's ``reason`` says.

Rollback targets: :func:`revision_task_definitions` maps a commit (or a prefix
of at least 7 hex digits) to the task definition each service ran at that
commit, and :func:`last_completed_commit` picks the commit ``rollback`` goes to
without ``--to``. Known limit: tags are mutable, so a task definition retagged
by a later commit (a change of user tags alone) shows the later commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from gitopsd.backends.ecs.client import NOT_APPLIED_CODES, EcsClient, cause_code, gather
from gitopsd.backends.ecs.ownership import REVISION_TAG
from gitopsd.backends.ecs.planner import primary_deployment, td_label
from gitopsd.backends.ecs.rollout import BREAKER_ROLLBACK_MARK
from gitopsd.config import AppConfig
from gitopsd.errors import BackendRejected, BackendUnavailable, PlanError

log = structlog.get_logger(__name__)

#: The most ListServiceDeployments answers in one page.
MAX_PAGE = 100
#: How many deployments per service a rollback target is looked for in.
ROLLBACK_SEARCH_LIMIT = MAX_PAGE

COMPLETED = "completed"
ROLLED_BACK = "rolled back by ECS"
FAILED = "failed"
STOPPED = "stopped"
IN_PROGRESS = "in progress"

#: Service deployment status -> outcome.
OUTCOMES: dict[str, str] = {
    "SUCCESSFUL": COMPLETED,
    "ROLLBACK_SUCCESSFUL": ROLLED_BACK,
    "ROLLBACK_FAILED": FAILED,
    "STOPPED": STOPPED,
    "PENDING": IN_PROGRESS,
    "IN_PROGRESS": IN_PROGRESS,
    "STOP_REQUESTED": IN_PROGRESS,
    "ROLLBACK_REQUESTED": IN_PROGRESS,
    "ROLLBACK_IN_PROGRESS": IN_PROGRESS,
}

#: A deployment's ``rolloutState`` (DescribeServices, the fallback) -> outcome.
ROLLOUT_OUTCOMES: dict[str, str] = {
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "IN_PROGRESS": IN_PROGRESS,
}

#: Errors that say the app's configuration is wrong, not that the API is missing.
_FATAL_CODES = frozenset({"ClusterNotFoundException"})
#: A service ECS does not know has no history (it was never created, or was deleted).
_NO_SERVICE_CODES = frozenset({"ServiceNotFoundException"})

_COMMIT = re.compile(r"[0-9a-f]{7,64}")
MIN_COMMIT_PREFIX = 7


@dataclass(frozen=True)
class HistoryEntry:
    """One deployment of one service, as ECS recorded it."""

    service: str
    #: ``""`` in the fallback (DescribeServices' ``deployments[]``), which has no such ARN.
    service_deployment_arn: str
    #: The service deployment's status (SUCCESSFUL, ROLLBACK_SUCCESSFUL, STOPPED, ...); in
    #: the fallback, the deployment's ``rolloutState`` (COMPLETED, FAILED, IN_PROGRESS).
    status: str
    #: One of :data:`COMPLETED`, :data:`ROLLED_BACK`, :data:`FAILED`, :data:`STOPPED`,
    #: :data:`IN_PROGRESS`.
    outcome: str
    #: The ARN of the task definition the deployment rolled out (its target).
    task_definition: str
    #: What the service ran when the deployment started.
    source_task_definitions: tuple[str, ...]
    #: The target task definition's ``gitopsd:revision`` tag; ``""`` if it has none.
    commit: str
    #: Epoch seconds (``startedAt``, else ``createdAt``).
    started_at: float | None
    finished_at: float | None
    #: ``finished_at - started_at``; None while it goes on.
    duration: float | None
    reason: str


# -- reading the history ----------------------------------------------------------------


async def app_history(
    client: EcsClient, app: AppConfig, services: Sequence[str], *, limit: int = 20
) -> list[HistoryEntry]:
    """The app's deployments, newest first: up to ``limit`` per service, all services merged."""
    names = list(dict.fromkeys(services))
    if not names:
        return []
    per_page = max(1, min(limit, MAX_PAGE))
    briefs: dict[str, list[dict[str, Any]]] = {}
    fallback: dict[str, str] = {}  # service -> why its history comes from DescribeServices
    todo = names
    if client.service_deployments_supported is False:
        fallback = dict.fromkeys(names, "the endpoint has no service deployments API")
        todo = []
    elif client.service_deployments_supported is None:
        first, todo = names[0], names[1:]
        try:  # the first call tells whether the endpoint has the API at all
            briefs[first] = await _list_briefs(client, app, first, per_page)
        except (BackendRejected, BackendUnavailable) as exc:
            if cause_code(exc) in _FATAL_CODES or cause_code(exc) in NOT_APPLIED_CODES:
                raise  # a wrong cluster, or throttling: not a missing API
            log.info("history.service_deployments_unsupported", app=app.name, error=str(exc))
            client.service_deployments_supported = False
            fallback = dict.fromkeys(names, f"the service deployments API is not available: {exc}")
            todo = []
        else:
            client.service_deployments_supported = True

    async def one(name: str) -> None:
        try:
            briefs[name] = await _list_briefs(client, app, name, per_page)
        except BackendRejected as exc:  # say, a service another controller deploys
            if cause_code(exc) in _FATAL_CODES:
                raise
            fallback[name] = f"ListServiceDeployments refused: {exc}"

    await gather(one, todo)
    # In the order of ``services``, so that deployments started together keep that order.
    entries = await _from_service_deployments(client, {n: briefs[n] for n in names if n in briefs})
    if fallback:
        entries += await _from_deployments(
            client, app, {n: fallback[n] for n in names if n in fallback}
        )
    return _newest_first(entries)


async def _list_briefs(
    client: EcsClient, app: AppConfig, service: str, per_page: int
) -> list[dict[str, Any]]:
    try:
        out = await client.call(
            "ListServiceDeployments", cluster=app.cluster, service=service, maxResults=per_page
        )
    except BackendRejected as exc:
        if cause_code(exc) in _NO_SERVICE_CODES:
            return []
        raise
    return list(out.get("serviceDeployments", []))


async def _from_service_deployments(
    client: EcsClient, briefs: dict[str, list[dict[str, Any]]]
) -> list[HistoryEntry]:
    arns = [str(b.get("serviceDeploymentArn", "")) for bs in briefs.values() for b in bs]
    arns = [a for a in arns if a]
    if not arns:
        return []
    described = await client.describe_service_deployments(arns)
    revision_arns: list[str] = []
    for bs in briefs.values():
        for brief in bs:
            sd = described.get(str(brief.get("serviceDeploymentArn", "")))
            revision_arns += _revision_arns(brief, sd)
    revisions = await client.describe_service_revisions(list(dict.fromkeys(revision_arns)))
    tds = {arn: str(rev.get("taskDefinition", "")) for arn, rev in revisions.items()}
    targets = [tds.get(_target_revision(b, described.get(_sd_arn(b))), "") for b in _all(briefs)]
    commits = await task_definition_commits(client, targets)
    entries = []
    for service, bs in briefs.items():
        for brief in bs:
            entries.append(_entry(service, brief, described.get(_sd_arn(brief)), tds, commits))
    return entries


def _all(briefs: dict[str, list[dict[str, Any]]]) -> Iterable[dict[str, Any]]:
    return (b for bs in briefs.values() for b in bs)


def _sd_arn(brief: dict[str, Any]) -> str:
    return str(brief.get("serviceDeploymentArn", ""))


def _target_revision(brief: dict[str, Any], sd: dict[str, Any] | None) -> str:
    if sd is not None:
        arn = str((sd.get("targetServiceRevision") or {}).get("arn", ""))
        if arn:
            return arn
    return str(brief.get("targetServiceRevisionArn", ""))


def _revision_arns(brief: dict[str, Any], sd: dict[str, Any] | None) -> list[str]:
    """The service revisions a deployment names: target, sources, rollback."""
    out = [_target_revision(brief, sd)]
    if sd is not None:
        out += [str(s.get("arn", "")) for s in sd.get("sourceServiceRevisions", [])]
        out.append(str((sd.get("rollback") or {}).get("serviceRevisionArn", "")))
    return [a for a in out if a]


def _entry(
    service: str,
    brief: dict[str, Any],
    sd: dict[str, Any] | None,
    tds: dict[str, str],
    commits: dict[str, str],
) -> HistoryEntry:
    doc = sd if sd is not None else brief
    status = str(doc.get("status", ""))
    td = tds.get(_target_revision(brief, sd), "")
    sources: tuple[str, ...] = ()
    reason = str(doc.get("statusReason") or "")
    outcome = OUTCOMES.get(status, status.lower().replace("_", " ") or "unknown")
    if sd is not None:
        found = (tds.get(str(s.get("arn", "")), "") for s in sd.get("sourceServiceRevisions", []))
        sources = tuple(dict.fromkeys(s for s in found if s))
        breaker = sd.get("deploymentCircuitBreaker") or {}
        if status == "STOPPED" and breaker.get("status") == "TRIGGERED":
            outcome = FAILED  # the circuit breaker stopped it, with rollback off
        back = tds.get(str((sd.get("rollback") or {}).get("serviceRevisionArn", "")), "")
        if back and status.startswith("ROLLBACK"):
            reason = _join(reason, f"ECS rolled back to {td_label(back)}")
    started = _ts(doc.get("startedAt")) or _ts(doc.get("createdAt"))
    finished = _ts(doc.get("finishedAt")) or _ts(doc.get("stoppedAt"))
    return HistoryEntry(
        service=service,
        service_deployment_arn=_sd_arn(brief),
        status=status,
        outcome=outcome,
        task_definition=td,
        source_task_definitions=sources,
        commit=commits.get(td, ""),
        started_at=started,
        finished_at=finished,
        duration=_duration(started, finished),
        reason=reason,
    )


async def _from_deployments(
    client: EcsClient, app: AppConfig, why: dict[str, str]
) -> list[HistoryEntry]:
    """The fallback: each service's current ``deployments[]`` (DescribeServices)."""
    live = await client.describe_services(app.cluster, list(why))
    tds = [
        str(d.get("taskDefinition", "")) for s in live.values() for d in s.get("deployments", [])
    ]
    commits = await task_definition_commits(client, tds)
    entries = []
    for name in why:
        svc = live.get(name)
        if svc is None:
            continue
        primary = primary_deployment(svc)
        deployments = sorted(
            svc.get("deployments", []), key=lambda d: _ts(d.get("createdAt")) or 0.0, reverse=True
        )
        breaker_back = primary is not None and BREAKER_ROLLBACK_MARK in str(
            primary.get("rolloutStateReason", "")
        )
        for i, d in enumerate(deployments):
            state = str(d.get("rolloutState") or "")
            outcome = ROLLOUT_OUTCOMES.get(state, state.lower().replace("_", " "))
            if not state:  # no rolloutState (a classic load balancer): judge by the counts
                steady = d is primary and len(deployments) == 1
                steady = steady and d.get("runningCount") == d.get("desiredCount")
                outcome = COMPLETED if steady else IN_PROGRESS
            if state == "FAILED" and d is not primary and breaker_back:
                outcome = ROLLED_BACK
            td = str(d.get("taskDefinition", ""))
            older = (str(o.get("taskDefinition", "")) for o in deployments[i + 1 :])
            started = _ts(d.get("createdAt"))
            finished = _ts(d.get("updatedAt")) if outcome != IN_PROGRESS else None
            said = str(d.get("rolloutStateReason") or "")
            reason = _join(
                said,
                "" if str(d.get("id", "")) in said else f"deployment {d.get('id', '')}",
                f"only the service's current deployments are known ({why[name]})",
            )
            entries.append(
                HistoryEntry(
                    service=name,
                    service_deployment_arn="",
                    status=state,
                    outcome=outcome,
                    task_definition=td,
                    source_task_definitions=tuple(dict.fromkeys(o for o in older if o)),
                    commit=commits.get(td, ""),
                    started_at=started,
                    finished_at=finished,
                    duration=_duration(started, finished),
                    reason=reason,
                )
            )
    return entries


async def task_definition_commits(client: EcsClient, arns: Iterable[str]) -> dict[str, str]:
    """Task-definition ARN -> its ``gitopsd:revision`` tag (``""``: none, or unreadable)."""
    found: dict[str, str] = {}

    async def one(arn: str) -> None:
        try:
            td = await client.task_definition(arn)
        except BackendRejected as exc:  # deleted since: its commit is unknown, not an error
            log.info("history.task_definition_unreadable", arn=arn, error=str(exc))
            found[arn] = ""
            return
        found[arn] = next(
            (str(t.get("value", "")) for t in td.get("tags", []) if t.get("key") == REVISION_TAG),
            "",
        )

    await gather(one, list(dict.fromkeys(a for a in arns if a)))
    return found


# -- choosing a rollback target ---------------------------------------------------------


def last_completed(entries: Sequence[HistoryEntry]) -> str | None:
    """The newest commit, before the current one, whose deployments all completed.

    Commits are ordered by when they were first deployed, so the current one is
    the commit gitopsd deployed last, even when ECS or gitopsd has since rolled it
    back (a redeployment of an older revision does not make that revision new
    again: ``rollback`` without ``--to`` twice goes to the same commit). A commit
    with any deployment that did not complete (rolled back, failed, stopped,
    still going) is skipped. Deployments without a commit tag are not gitopsd's
    and are ignored.
    """
    first: dict[str, float] = {}
    ok: dict[str, bool] = {}
    for e in entries:
        if not e.commit:
            continue
        at = e.started_at or 0.0
        first[e.commit] = min(first.get(e.commit, at), at)
        ok[e.commit] = ok.get(e.commit, True) and e.outcome == COMPLETED
    order = sorted(first, key=lambda c: first[c], reverse=True)
    return next((c for c in order[1:] if ok[c]), None)


async def last_completed_commit(
    client: EcsClient,
    app: AppConfig,
    services: Sequence[str],
    *,
    limit: int = ROLLBACK_SEARCH_LIMIT,
) -> str | None:
    """:func:`last_completed` of the app's history; None when there is no such commit."""
    return last_completed(await app_history(client, app, services, limit=limit))


async def revision_task_definitions(
    client: EcsClient,
    app: AppConfig,
    services: Sequence[str],
    commit: str,
    *,
    limit: int = ROLLBACK_SEARCH_LIMIT,
) -> dict[str, str]:
    """Service name -> the task-definition ARN it ran at ``commit`` (full or a prefix).

    See :func:`task_definitions_at`; raises :class:`PlanError` when ``commit`` is
    not in the history or a service has no revision for it.
    """
    entries = await app_history(client, app, services, limit=limit)
    _, tds = await task_definitions_at(client, app, services, entries, commit)
    return tds


async def rollback_targets(
    client: EcsClient, app: AppConfig, services: Sequence[str], commit: str | None
) -> tuple[str, dict[str, str]]:
    """The commit to roll back to (``commit``, else :func:`last_completed`), in full, and
    service name -> task-definition ARN for it. Raises :class:`PlanError` when there is none."""
    entries = await app_history(client, app, services, limit=ROLLBACK_SEARCH_LIMIT)
    if commit is None:
        commit = last_completed(entries)
        if commit is None:
            raise PlanError(
                f"app {app.name!r}: no earlier revision whose deployments all completed in "
                f"the history ECS keeps; name one with --to REVISION "
                f"(see gitopsd history {app.name})"
            )
    return await task_definitions_at(client, app, services, entries, commit)


async def task_definitions_at(
    client: EcsClient,
    app: AppConfig,
    services: Sequence[str],
    entries: Sequence[HistoryEntry],
    commit: str,
) -> tuple[str, dict[str, str]]:
    """The full commit ``commit`` names, and per service the task definition for it.

    Per service, in this order: the newest deployment of a task definition
    tagged with the commit that completed, else any deployment of one, else a
    source revision tagged with it. A commit that did not change a service's
    task definition (it keeps the tag of an older commit) means the revision the
    service ran when the commit was first deployed: its newest completed
    deployment that started no later. A deregistered (INACTIVE) revision cannot
    be deployed and is refused.
    """
    names = list(dict.fromkeys(services))
    wanted = commit.strip().lower()
    if not _COMMIT.fullmatch(wanted):
        raise PlanError(
            f"app {app.name!r}: {commit!r} is not a commit: give at least "
            f"{MIN_COMMIT_PREFIX} hex digits of one (see gitopsd history {app.name})"
        )
    sources = [s for e in entries for s in e.source_task_definitions]
    commits = {e.task_definition: e.commit for e in entries if e.task_definition}
    commits.update(await task_definition_commits(client, (s for s in sources if s not in commits)))
    matches = sorted({c for c in commits.values() if c and c.lower().startswith(wanted)})
    if not matches:
        raise PlanError(
            f"app {app.name!r}: no task definition tagged {REVISION_TAG}={commit} in the "
            f"deployments ECS keeps for {', '.join(names)} (see gitopsd history {app.name})"
        )
    if len(matches) > 1:
        raise PlanError(
            f"app {app.name!r}: {commit!r} is ambiguous ({', '.join(m[:12] for m in matches)}): "
            "give more of the commit"
        )
    full = matches[0]
    first = min(
        (e.started_at or 0.0 for e in entries if e.commit == full and e.started_at), default=None
    )
    chosen: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        mine = [e for e in entries if e.service == name]  # newest first
        td = (
            next(
                (e.task_definition for e in mine if e.commit == full and e.outcome == COMPLETED), ""
            )
            or next((e.task_definition for e in mine if e.commit == full), "")
            or next(
                (s for e in mine for s in e.source_task_definitions if commits.get(s) == full), ""
            )
        )
        if not td and first is not None:  # the commit left this service's revision as it was
            td = next(
                (
                    e.task_definition
                    for e in mine
                    if e.outcome == COMPLETED and e.started_at is not None and e.started_at <= first
                ),
                "",
            )
        if td:
            chosen[name] = td
        else:
            missing.append(name)
    if missing:
        raise PlanError(
            f"app {app.name!r}: no revision of {', '.join(missing)} for commit {full[:12]} in "
            f"the deployments ECS keeps (no task definition tagged {REVISION_TAG}={full[:12]}, "
            f"and no completed deployment from before it); choose another revision "
            f"(see gitopsd history {app.name})"
        )
    for name, td in chosen.items():
        status = str((await client.task_definition(td, fresh=True)).get("status", "ACTIVE"))
        if status != "ACTIVE":
            raise PlanError(
                f"app {app.name!r}: {name}'s revision for commit {full[:12]}, {td_label(td)}, "
                f"is {status} (deregistered) and cannot be deployed; choose another revision"
            )
    return full, chosen


# -- helpers ----------------------------------------------------------------------------


def _newest_first(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    return sorted(entries, key=lambda e: e.started_at or 0.0, reverse=True)  # stable


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def _duration(started: float | None, finished: float | None) -> float | None:
    if started is None or finished is None:
        return None
    return max(0.0, finished - started)


def _join(*parts: str) -> str:
    return "; ".join(p.rstrip(".") for p in parts if p)
