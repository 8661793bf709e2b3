"""How outcomes are shown: a readable coloured diff for people, JSON for machines.

Kept apart from the CLI's argument handling so the daemon's status API and the
demo can show the same words.

No secret is shown (:mod:`gitopsd.redact`). Everything the CLI prints goes
through :class:`RedactingStream` (:func:`redacted_stdio` wraps stdout and stderr
for the whole command), so every registered value, URL credential and token is
masked at the one place text is written. JSON is masked in the data before it is
serialised (:func:`dump_json`), so escaping cannot hide a value from the mask.
A diff of a field that holds a secret still shows that it changed, as
``*** -> ***``: both sides are masked, also the old live value, which gitopsd
never read from Git and so could not have registered.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO, cast

from gitopsd.engine.outcome import Outcome
from gitopsd.humanize import age
from gitopsd.model import MISSING, Action, FieldChange, HealthState, ResourceChange
from gitopsd.redact import MASK, redact, redact_obj

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


class RedactingStream:
    """A text stream that masks secrets (:func:`gitopsd.redact.redact`) in what is written.

    Everything else (``isatty``, ``flush``, ``encoding``...) is the wrapped stream's.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def redacted_stdio() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` through :class:`RedactingStream` for the body."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, RedactingStream(out))
    sys.stderr = cast(TextIO, RedactingStream(err))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def dump_json(doc: Any, *, indent: int | None = 2) -> str:
    """``doc`` as JSON with every secret masked in the data first."""
    return json.dumps(redact_obj(doc), indent=indent, default=str)


def _sensitive(value: Any) -> bool:
    return value is not MISSING and redact_obj(value) != value


def _masked(value: Any) -> Any:
    """A scalar as ``***`` (``None`` stays: it holds nothing); a container redacted."""
    if value is None or value is MISSING:
        return value
    if isinstance(value, Mapping | list | tuple):
        return redact_obj(value)
    return MASK


def mask_change(before: Any, after: Any) -> tuple[Any, Any]:
    """Both sides of a field change, safe to show.

    Where either side holds a secret, both are masked: the old value of a rotated
    password is as secret as the new one, though only the new one was read from Git
    (and registered). Containers on both sides are compared member by member, so a
    secret masks only its own member. A side that is absent leaves the other one to
    :func:`gitopsd.redact.redact_obj`.
    """
    if before is MISSING or after is MISSING:
        return _masked_alone(before), _masked_alone(after)
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        b: dict[Any, Any] = {}
        a: dict[Any, Any] = {}
        for key in [*before, *(k for k in after if k not in before)]:
            x, y = mask_change(before.get(key, MISSING), after.get(key, MISSING))
            if key in before:
                b[key] = x
            if key in after:
                a[key] = y
        return b, a
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        items = [mask_change(x, y) for x, y in zip(before, after, strict=True)]
        return [x for x, _ in items], [y for _, y in items]
    if _sensitive(before) or _sensitive(after):
        return _masked(before), _masked(after)
    return before, after


def _masked_alone(value: Any) -> Any:
    """One side of a change whose other side is absent: a secret scalar is ``***``."""
    if isinstance(value, Mapping | list | tuple):
        return redact_obj(value)
    return MASK if _sensitive(value) else value


def _value(v: Any) -> str:
    if v is MISSING:
        return "(absent)"
    if v == MASK:
        return MASK
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
    before, after = mask_change(change.before, change.after)
    if change.op == "add":
        body = f"{change.path}: {_value(after)}"
    elif change.op == "remove":
        body = f"{change.path}: {_value(before)}"
    else:
        body = f"{change.path}: {_value(before)} -> {_value(after)}"
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
    before, after = mask_change(c.before, c.after)
    if before is not MISSING:
        d["before"] = before
    if after is not MISSING:
        d["after"] = after
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
    """The outcomes as one JSON document; ``interrupted`` = (signal name, journal lines).

    Secrets are masked (:func:`dump_json`).
    """
    stream = stream or sys.stdout
    doc: dict[str, Any] = {"apps": [outcome_json(o) for o in outcomes]}
    if interrupted is not None:
        doc["interrupted"] = {"signal": interrupted[0], "journal": list(interrupted[1])}
    stream.write(dump_json(doc) + "\n")


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
        if a.get("progress"):  # a rollout being watched: its stage says more than "Ready"
            message = f"rollout {a['progress']}" + (f"; {message}" if message else "")
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
        for d in r.get("approvals") or []:  # decisions on this deployment's PAUSE hooks
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(d.get("at") or 0.0)))
            said = f": {d['reason']}" if d.get("reason") else ""
            table.append(
                (when, "", "", f"  {d.get('outcome', '')}", "", "", f"{d.get('action', '')} by "
                 f"{d.get('by', '')} at {d.get('stage') or '-'}{said}")
            )  # fmt: skip
    return _table(
        table,
        paint,
        lambda t: (
            None
            if t[3] == "completed"
            else ("red" if t[3] in ("failed", "rolled back by ECS") else "yellow")
        ),
    )
