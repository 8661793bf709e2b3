"""How outcomes are shown: a readable coloured diff for people, JSON for machines.

Kept apart from the CLI's argument handling so the daemon's status API and the
demo can show the same words.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from gitopsd.engine.outcome import Outcome
from gitopsd.humanize import age
from gitopsd.model import MISSING, Action, FieldChange, HealthState, ResourceChange

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "bold": "1", "dim": "2"}


class Painter:
    """ANSI colours when writing to a terminal (and NO_COLOR is unset), plain text otherwise."""

    def __init__(self, stream: TextIO, mode: str = "auto") -> None:
        if mode == "auto":
            self.enabled = stream.isatty() and "NO_COLOR" not in os.environ
        else:
            self.enabled = mode == "always"

    def __call__(self, text: str, colour: str) -> str:
        if not self.enabled:
            return text
        return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def _value(v: Any) -> str:
    if v is MISSING:
        return "(absent)"
    return json.dumps(v, sort_keys=True, default=str)


_ACTION_MARK = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.NOOP: ("=", "dim"),
}
_OP_MARK = {"add": ("+", "green"), "remove": ("-", "red"), "replace": ("~", "yellow")}


def _field_lines(change: FieldChange, paint: Painter) -> list[str]:
    mark, colour = _OP_MARK[change.op]
    note = f"  ({change.note})" if change.note else ""
    if change.op == "add":
        body = f"{change.path}: {_value(change.after)}"
    elif change.op == "remove":
        body = f"{change.path}: {_value(change.before)}"
    else:
        body = f"{change.path}: {_value(change.before)} -> {_value(change.after)}"
    return [paint(f"      {mark} {body}{note}", colour)]


def _resource_lines(rc: ResourceChange, paint: Painter) -> list[str]:
    mark, colour = _ACTION_MARK[rc.action]
    label = {
        Action.CREATE: "create",
        Action.UPDATE: "new revision" if rc.kind == "TaskDefinition" else "update",
        Action.NOOP: "in sync",
    }[rc.action]
    where = f"  {rc.origin.file}:{rc.origin.line}" if rc.origin else ""
    lines = [paint(f"  {mark} {rc.key}", colour) + f"  ({label}){paint(where, 'dim')}"]
    for c in rc.changes:
        lines += _field_lines(c, paint)
    return lines


def _head(o: Outcome, paint: Painter) -> str:
    rev = ""
    if o.revision is not None:
        rev = f" @ {o.revision.ref} {o.revision.commit[:12]}"
    return paint(f"app {o.app}", "bold") + rev


_HEALTH_COLOUR = {HealthState.PROGRESSING: "yellow", HealthState.DEGRADED: "red"}


def _health_lines(o: Outcome, paint: Painter) -> list[str]:
    if o.changeset is None:
        return []
    return [
        paint(
            f"  ! {rc.key}: {rc.health.state}: {rc.health.message}", _HEALTH_COLOUR[rc.health.state]
        )
        for rc in o.changeset.unsettled
        if rc.health is not None
    ]


def _prune_lines(o: Outcome, paint: Painter) -> list[str]:
    if o.prune is None:
        return []
    lines = []
    for item in o.prune.items:
        mark = "held" if o.prune_held else "prune"
        lines.append(paint(f"  - {item.key}  ({mark}: {item.reason})", "red"))
    for item in o.prune.kept:
        lines.append(paint(f"  = {item.key}  (kept: {item.reason})", "dim"))
    return lines


def format_plan(o: Outcome, paint: Painter) -> str:
    """An app's pending changes, as printed before a sync applies them."""
    out = [_head(o, paint) + paint("  plan:", "bold")]
    if o.changeset is not None:
        for rc in o.changeset.pending:
            out += _resource_lines(rc, paint)
    out += _prune_lines(o, paint)
    return "\n".join(out)


def format_outcomes(
    outcomes: Sequence[Outcome],
    paint: Painter,
    *,
    show_noop: bool = False,
    streamed: bool = False,
) -> str:
    """Each app's result. ``streamed``: the plan and the writes were printed as they
    happened (sync), so only the totals, rollouts and errors are repeated."""
    out: list[str] = []
    for o in outcomes:
        out.append(_head(o, paint))
        for w in o.warnings:
            out.append(paint(f"  warning: {w}", "yellow"))
        if o.changeset is not None:
            pending = o.changeset.pending
            if not streamed:
                for rc in o.changeset.resources:
                    if rc.action is not Action.NOOP or show_noop:
                        out += _resource_lines(rc, paint)
            unsettled = _health_lines(o, paint)
            if not streamed:
                out += _prune_lines(o, paint)
            if not pending and not unsettled and (o.prune is None or o.prune.empty):
                out.append(paint("  in sync: nothing to do", "green"))
            elif not pending:
                out.append(paint("  no changes in Git, but not every service is steady:", "yellow"))
            out += unsettled
        if o.pruned is not None and o.pruned.applied:
            out.append(paint(f"  pruned {len(o.pruned.applied)} resources", "blue"))
        if o.applied is not None:
            if streamed:
                if o.applied.applied:
                    n = len(o.applied.applied)
                    out.append(paint(f"  applied {n} change{'s' if n != 1 else ''}", "blue"))
            else:
                for a in o.applied.applied:
                    out.append(paint(f"  applied {a.key}: {a.message}", "blue"))
        for r in o.rollouts:
            colour = "green" if r.ok else "red"
            out.append(paint(f"  rollout {r.key}: {r.state}: {r.message}", colour))
        if not o.ok:
            head = f"  error ({o.reason}, {'temporary' if o.temporary else 'permanent'}): "
            body = o.message.replace("\n", "\n    ")
            out.append(paint(head, "red") + body)
    return "\n".join(out)


def _change_json(c: FieldChange) -> dict[str, Any]:
    d: dict[str, Any] = {"path": c.path, "op": c.op}
    if c.before is not MISSING:
        d["before"] = c.before
    if c.after is not MISSING:
        d["after"] = c.after
    if c.note:
        d["note"] = c.note
    return d


def outcome_json(o: Outcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "app": o.app,
        "revision": (
            {"source": o.revision.source, "ref": o.revision.ref, "commit": o.revision.commit}
            if o.revision
            else None
        ),
        "ok": o.ok,
        "reason": o.reason,
    }
    if o.warnings:
        doc["warnings"] = list(o.warnings)
    if o.prune is not None:
        doc["prune"] = {
            "held": o.prune_held,
            "share": o.prune.share,
            "items": [{"resource": i.key, "arn": i.arn, "reason": i.reason} for i in o.prune.items],
            "kept": [{"resource": i.key, "reason": i.reason} for i in o.prune.kept],
        }
    if o.pruned is not None:
        doc["pruned"] = [{"resource": a.key, "action": a.action} for a in o.pruned.applied]
    if o.changeset is not None:
        doc["in_sync"] = o.changeset.in_sync
        doc["resources"] = [
            {
                "kind": rc.kind,
                "name": rc.name,
                "action": str(rc.action),
                "changes": [_change_json(c) for c in rc.changes],
                **(
                    {"health": {"state": str(rc.health.state), "message": rc.health.message}}
                    if rc.health is not None
                    else {}
                ),
            }
            for rc in o.changeset.resources
        ]
    if o.applied is not None:
        doc["applied"] = [
            {"resource": a.key, "action": a.action, "arn": a.arn, "message": a.message}
            for a in o.applied.applied
        ]
    if o.rollouts:
        doc["rollouts"] = [
            {"resource": r.key, "state": r.state, "message": r.message} for r in o.rollouts
        ]
    if not o.ok:
        doc["error"] = {
            "stage": str(o.failed_stage),
            "message": o.message,
            "temporary": o.temporary,
        }
    return doc


def write_json(
    outcomes: Sequence[Outcome],
    stream: TextIO | None = None,
    *,
    interrupted: tuple[str, Sequence[str]] | None = None,
) -> None:
    """The outcomes as one JSON document; ``interrupted`` = (signal name, journal lines)."""
    stream = stream or sys.stdout
    doc: dict[str, Any] = {"apps": [outcome_json(o) for o in outcomes]}
    if interrupted is not None:
        doc["interrupted"] = {"signal": interrupted[0], "journal": list(interrupted[1])}
    json.dump(doc, stream, indent=2, default=str)
    stream.write("\n")


def status_row(o: Outcome) -> dict[str, Any]:
    """A read-only pass's outcome in the shape of the agent's app status."""
    changeset = o.changeset
    unsettled = changeset.unsettled if changeset is not None else ()
    health = "Unknown"
    if changeset is not None:
        health = "Healthy"
        if unsettled:
            degraded = any(r.health and r.health.state is HealthState.DEGRADED for r in unsettled)
            health = "Degraded" if degraded else "Progressing"
    sync = "Unknown" if changeset is None else ("Synced" if changeset.in_sync else "OutOfSync")
    ready = "True" if o.ok and sync == "Synced" and health == "Healthy" else "False"
    return {
        "app": o.app,
        "last_attempted": o.revision.commit if o.revision else "",
        "sync": sync,
        "health": health,
        "suspended": False,
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": o.reason if not o.ok else sync,
                "message": o.message,
                "since": 0.0,
            }
        ],
    }


def _age(since: float) -> str:
    return age(since) if since else "-"


def format_status_table(apps: Sequence[dict[str, Any]], paint: Painter) -> str:
    """One line per app: revision, sync, health, ready with its reason, age, message."""
    rows = [("APP", "REVISION", "SYNC", "HEALTH", "READY", "REASON", "AGE", "MESSAGE")]
    for a in apps:
        ready: dict[str, Any] = next(
            (c for c in a.get("conditions", []) if c.get("type") == "Ready"), {}
        )
        reason = str(ready.get("reason", ""))
        stalled = next(
            (c for c in a.get("conditions", []) if c.get("type") == "Stalled"), {"status": ""}
        )
        if stalled.get("status") == "True":
            reason = f"Stalled: {stalled.get('reason', '')}"
            ready = {**ready, "message": stalled.get("message", ready.get("message", ""))}
        if a.get("suspended"):
            reason = "Suspended"
        revision = str(a.get("last_applied") or a.get("last_attempted") or "")[:12] or "-"
        message = " ".join(str(ready.get("message", "")).split())
        rows.append(
            (
                str(a.get("app", "")),
                revision,
                str(a.get("sync", "Unknown")),
                str(a.get("health", "Unknown")),
                str(ready.get("status", "Unknown")),
                reason or "-",
                _age(float(ready.get("since", 0.0) or 0.0)),
                message[:80] or "-",
            )
        )
    return _table(
        rows, paint, lambda r: None if r[4] == "True" else ("red" if r[4] == "False" else "yellow")
    )


def _table(
    rows: Sequence[tuple[str, ...]], paint: Painter, colour: Callable[[tuple[str, ...]], str | None]
) -> str:
    """Aligned columns; the first row is the header, ``colour`` picks each other row's colour."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        line = "  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip()
        shade = "bold" if i == 0 else colour(r)
        lines.append(paint(line, shade) if shade else line)
    return "\n".join(lines)


def format_history(rows: Sequence[dict[str, Any]], paint: Painter) -> str:
    """``gitopsd history``: one line per deployment, newest first."""
    table = [("TIME", "SERVICE", "COMMIT", "OUTCOME", "DURATION", "TASK DEFINITION", "MESSAGE")]
    for r in rows:
        started = r.get("started_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(started))) if started else "-"
        duration = r.get("duration")
        table.append(
            (
                when,
                str(r.get("service", "")),
                str(r.get("commit", ""))[:12] or "-",
                str(r.get("outcome", "")),
                f"{float(duration):.0f}s" if duration is not None else "-",
                str(r.get("task_definition", "")).rsplit("/", 1)[-1] or "-",
                str(r.get("message", "")) or str(r.get("reason", "")) or "-",
            )
        )
    return _table(
        table,
        paint,
        lambda t: (
            None
            if t[3] == "completed"
            else ("red" if t[3] in ("failed", "rolled back by ECS") else "yellow")
        ),
    )
