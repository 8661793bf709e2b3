"""The ``gitopsd`` command: argument parsing, exit codes and what gets printed.

One convention for every command (as ``flux diff`` and ``argocd app diff``):
0 success (``diff``: in sync), 1 ``diff`` found changes, 2 an error (any app
failed, a bad configuration or usage), 130 interrupted by SIGINT (Ctrl-C) and
143 by SIGTERM; an interrupted ``sync`` first prints what it had written.
Command output goes to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gitopsd import __version__

# Start-up time: ``gitopsd --help`` and ``gitopsd version`` must not pay for AWS, OpenTelemetry,
# pydantic, dulwich or structlog (tests/test_startup.py). So this module imports only the
# standard library at its top; each command imports what it needs when it runs.
if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable

    import anyio

    from gitopsd.backends.base import Applied, Backend
    from gitopsd.config import AppConfig, Config
    from gitopsd.engine.journal import RunJournal
    from gitopsd.engine.outcome import Outcome
    from gitopsd.engine.reconcile import Mode
    from gitopsd.gates import GatePlugins
    from gitopsd.manifests.schema import Schema
    from gitopsd.output import Painter

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(Exception):
    """A signal stopped the run; carries what had been done so far."""

    def __init__(self, signum: int, journal: RunJournal, order: Sequence[str]) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.journal = journal
        self.order = list(order)

    @property
    def code(self) -> int:
        return EXIT_SIGNAL.get(signal.Signals(self.signum), 130)


class ConsoleListener:
    """Prints a sync as it happens: each app's plan before it is applied, then each write."""

    def __init__(self, paint: Painter) -> None:
        self.paint = paint

    def planned(self, outcome: Outcome) -> None:
        from gitopsd.output import format_plan

        print(format_plan(outcome, self.paint), flush=True)

    def wrote(self, app: str, applied: Applied) -> None:
        print(
            self.paint(f"  app {app}: applied {applied.key}: {applied.message}", "blue"), flush=True
        )

    def unsure(self, app: str, key: str, message: str) -> None:
        print(
            self.paint(f"  app {app}: {key}: {message}; it may have been made", "yellow"),
            flush=True,
        )

    def warned(self, app: str, message: str) -> None:
        print(self.paint(f"  app {app}: warning: {message}", "yellow"), flush=True)


def _config(args: argparse.Namespace) -> Config:
    """The configuration from ``--config``, else the environment (:mod:`gitopsd.config_source`)."""
    from gitopsd import config_source

    return config_source.load(config_source.resolve(args.config))


def _select(cfg: Config, names: Sequence[str]) -> list[AppConfig]:
    return [cfg.app(n) for n in names] if names else list(cfg.apps)


async def _run_pass(
    cfg: Config, args: argparse.Namespace, mode: Mode, paint: Painter
) -> list[Outcome]:
    """One pass; a SIGINT or SIGTERM cancels it and raises :class:`Interrupted`."""
    import contextlib

    import anyio

    from gitopsd.engine.reconcile import Mode, Reconciler
    from gitopsd.engine.sources import SourceSet
    from gitopsd.plugins import event_bus
    from gitopsd.statestore.factory import open_store

    apps = _select(cfg, getattr(args, "apps", []) or [])
    sources = SourceSet(
        cfg, directory=getattr(args, "dir", None), offline=getattr(args, "offline", False)
    )
    text = getattr(args, "output", "text") == "text"

    def progress(key: str, message: str) -> None:
        print(paint(f"    {key}: {message}", "dim"), flush=True)

    caught: list[int] = []
    outcomes: list[Outcome] = []
    # Alerts only come from syncs; a diff needs no plugins (nor their configuration).
    bus = event_bus(cfg.plugins) if mode is Mode.SYNC else None
    try:
        async with (
            bus.running() if bus is not None else contextlib.nullcontext(),
            open_store(cfg) as store,
            _backend(
                cfg, mode, progress if text else None, bus.registry.gate if bus else None
            ) as backend,
        ):
            reconciler = Reconciler(
                cfg,
                backend,
                sources,
                events=bus,
                wait=False if getattr(args, "no_wait", False) else None,
                listener=ConsoleListener(paint) if text and mode is Mode.SYNC else None,
                confirm_prune=getattr(args, "confirm_prune", False),
                store=store,
                approvers=bus.registry.approvers if bus is not None else (),
            )
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch_signals, scope, caught)
                    outcomes = await reconciler.run(apps, mode)
                    tg.cancel_scope.cancel()
    finally:
        sources.close()
        setup = sys.modules.get("gitopsd.telemetry.setup")  # not imported: nothing to flush
        telemetry = setup.current() if setup is not None else None
        if telemetry is not None:
            telemetry.flush()
    if caught:
        raise Interrupted(caught[0], reconciler.journal, [a.name for a in apps])
    return outcomes


async def _watch_signals(scope: anyio.CancelScope, caught: list[int]) -> None:
    import threading

    import anyio

    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (gitopsd run from a test's thread)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            caught.append(signum)
            scope.cancel()
            return


def _load(args: argparse.Namespace) -> Config:
    if getattr(args, "dir", None):
        args.dir = Path(args.dir).resolve()
    cfg = _config(args)
    _observe(cfg, args)
    return cfg


def _observe(cfg: Config, args: argparse.Namespace) -> None:
    """Logs as ``[log]`` says (the command line wins), and the OpenTelemetry SDK."""
    from gitopsd.telemetry.exporters import exports_anything
    from gitopsd.telemetry.logs import configure_logging

    if args.log_level is None and args.log_format is None and (cfg.log.level or cfg.log.format):
        configure_logging(cfg.log.level or "warning", cfg.log.format or "auto")
    elif args.log_level is None and cfg.log.level:
        configure_logging(cfg.log.level, args.log_format or "auto")
    elif args.log_format is None and cfg.log.format:
        configure_logging(args.log_level or "warning", cfg.log.format)
    if exports_anything(cfg.telemetry, os.environ):  # else no SDK: nothing would leave
        from gitopsd.telemetry.setup import setup_telemetry

        setup_telemetry(cfg.telemetry, version=__version__)


def cmd_validate(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.engine.reconcile import Mode
    from gitopsd.output import Painter

    cfg = _load(args)
    paint = Painter(sys.stdout, args.color)
    outcomes = anyio.run(_run_pass, cfg, args, Mode.RENDER, paint)
    for o in outcomes:
        if o.ok:
            print(paint(f"ok  app {o.app}: {len(o.resources)} resources", "green"))
        else:
            print(paint(f"err app {o.app} ({o.reason}):", "red"))
            print("    " + o.message.replace("\n", "\n    "))
        for w in o.warnings:
            print(paint(f"    warning: {w}", "yellow"))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_ERROR


def cmd_render(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.engine.reconcile import Mode
    from gitopsd.manifests.render import dump_resources
    from gitopsd.output import Painter

    cfg = _load(args)
    args.apps = [args.app]
    (outcome,) = anyio.run(_run_pass, cfg, args, Mode.RENDER, Painter(sys.stdout, args.color))
    if not outcome.ok:
        print(f"gitopsd render: app {outcome.app} ({outcome.reason}):", file=sys.stderr)
        print("  " + outcome.message.replace("\n", "\n  "), file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(dump_resources(outcome.resources))
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.engine.reconcile import Mode
    from gitopsd.output import Painter, format_outcomes, write_json

    cfg = _load(args)
    paint = Painter(sys.stdout, args.color)
    outcomes = anyio.run(_run_pass, cfg, args, Mode.PLAN, paint)
    if args.output == "json":
        write_json(outcomes)
    else:
        print(format_outcomes(outcomes, paint))
    if not all(o.ok for o in outcomes):
        return EXIT_ERROR
    in_sync = all(o.changeset is not None and o.changeset.in_sync for o in outcomes)
    return EXIT_OK if in_sync else EXIT_CHANGES


def cmd_sync(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.engine.reconcile import Mode
    from gitopsd.output import Painter, format_outcomes, write_json

    cfg = _load(args)
    paint = Painter(sys.stdout, args.color)
    mode = Mode.PLAN if args.dry_run else Mode.SYNC
    try:
        outcomes = anyio.run(_run_pass, cfg, args, mode, paint)
    except Interrupted as stop:
        lines = stop.journal.summary(stop.order)
        if args.output == "json":
            write_json([], interrupted=(signal.Signals(stop.signum).name, lines))
        else:
            print(paint(f"interrupted by {signal.Signals(stop.signum).name}:", "red"))
            print("\n".join(lines), flush=True)
        return stop.code
    if args.output == "json":
        write_json(outcomes)
    else:
        if args.dry_run:
            print(paint("dry run: nothing was changed", "dim"))
        print(format_outcomes(outcomes, paint, streamed=not args.dry_run))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_ERROR


def cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd import config_source
    from gitopsd.daemon import run_agent

    source = config_source.resolve(args.config)
    config = config_source.load(source)
    _observe(config, args)  # a bad configuration stops it here
    return anyio.run(run_agent, source, config)


def _socket(args: argparse.Namespace) -> Path | str:
    """The running agent: ``--agent URL`` / ``$GITOPSD_AGENT_URL``, else its control socket."""
    from gitopsd.daemon import control_socket

    remote = getattr(args, "agent", None) or os.environ.get("GITOPSD_AGENT_URL")
    if remote:
        return str(remote)
    return control_socket(_config(args))


def cmd_status(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.control import AgentUnreachable, get_status
    from gitopsd.output import Painter, dump_json, format_status_table

    try:
        apps = anyio.run(get_status, _socket(args))
    except AgentUnreachable as exc:
        # stderr in both formats: stdout stays one JSON document ("agent": false says it).
        print(f"{exc}; reading live state instead (read-only):", file=sys.stderr)
        return _status_from_aws(args)
    if args.output == "json":
        print(dump_json({"apps": apps}))
        return EXIT_OK
    print(format_status_table(apps, Painter(sys.stdout, args.color)))
    return EXIT_OK


def _status_from_aws(args: argparse.Namespace) -> int:
    """No agent: plan every app (read-only) and show the same table."""
    import anyio

    from gitopsd.engine.reconcile import Mode
    from gitopsd.output import Painter, dump_json, format_status_table, status_row

    cfg = _load(args)
    args.apps = []
    paint = Painter(sys.stdout, args.color)
    outcomes = anyio.run(_run_pass, cfg, args, Mode.PLAN, paint)
    rows = [status_row(o) for o in outcomes]
    anyio.run(_say_paused, cfg, outcomes, rows)
    if args.output == "json":
        print(dump_json({"apps": rows, "agent": False}))
    else:
        print(format_status_table(rows, paint))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_ERROR


async def _say_paused(cfg: Config, outcomes: list[Any], rows: list[dict[str, Any]]) -> None:
    """No agent to say it: an app whose rollout waits at a PAUSE hook gets "approval
    needed" (what, until when, the command) as its message."""
    from datetime import UTC, datetime

    from gitopsd.engine.reconcile import Mode
    from gitopsd.errors import GitopsdError

    waiting = [
        (o, row) for o, row in zip(outcomes, rows, strict=True) if row["health"] == "Progressing"
    ]
    if not waiting:
        return
    async with _backend(cfg, Mode.PLAN, None, None) as backend:
        for o, row in waiting:
            try:
                hooks = await backend.paused_hooks(cfg.app(o.app), o.resources)
            except GitopsdError:
                continue  # the table still says Progressing
            said = []
            for h in hooks:
                until = (
                    datetime.fromtimestamp(h.expires_at, UTC).strftime(" until %Y-%m-%d %H:%M:%SZ")
                    if h.expires_at
                    else ""
                )
                action = f" (then {h.timeout_action})" if h.timeout_action else ""
                said.append(
                    f"{h.key} waits at a PAUSE hook ({h.hook_id}) in {h.stage}{until}{action}"
                )
            if said:
                row["conditions"][0]["message"] = (
                    f"approval needed: {'; '.join(said)}: `gitopsd approve {o.app}` continues "
                    f"it, `gitopsd approve {o.app} --reject` rolls it back"
                )


def _control(args: argparse.Namespace, request: dict[str, object]) -> int:
    import anyio

    from gitopsd.control import send_control
    from gitopsd.output import dump_json

    answer = anyio.run(send_control, _socket(args), request)
    print(dump_json(answer))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    return _control(args, {"action": "reconcile", "app": args.app, "force": args.force})


def cmd_suspend(args: argparse.Namespace) -> int:
    return _control(args, {"action": "suspend", "app": args.app})


def cmd_resume(args: argparse.Namespace) -> int:
    return _control(args, {"action": "resume", "app": args.app})


def cmd_approve(args: argparse.Namespace) -> int:
    """Continue (or, with ``--reject``, roll back) the app's deployments paused at PAUSE
    hooks: through the running agent when there is one, else directly."""
    import anyio

    from gitopsd.control import AgentUnreachable, send_control
    from gitopsd.engine.approvals import DecisionRecord, default_who

    cfg = _load(args)
    app = cfg.app(args.app)
    by = args.by or default_who()
    request = {
        "action": "approve",
        "app": app.name,
        "approve": not args.reject,
        "service": args.service,
        "by": by,
        "reason": args.reason or "",
    }
    agent = _socket(args)
    try:
        answer = anyio.run(send_control, agent, request)
        decisions = [DecisionRecord.from_json(d) for d in answer.get("decisions", [])]
        via = "the agent acted"
    except AgentUnreachable as exc:
        if isinstance(agent, str) or not exc.absent:
            raise  # a remote agent, or one that may have acted: never act a second time
        decisions = anyio.run(_approve, cfg, app, args, by)
        via = "no agent running: acted directly"
    for d in decisions:
        print(
            f"app {app.name}: Service/{d.service}: {d.outcome} ({d.action}) by {d.by}; "
            f"hook {d.hook_id} at {d.stage or '-'} of {d.deployment.rsplit('/', 1)[-1]} "
            f"({via})" + (f": {d.reason}" if d.reason else "")
        )
    return EXIT_OK


async def _approve(cfg: Config, app: AppConfig, args: argparse.Namespace, by: str) -> list[Any]:
    from gitopsd.backends.ecs.backend import EcsBackend
    from gitopsd.engine.approvals import Approvals
    from gitopsd.engine.reconcile import Mode, Reconciler
    from gitopsd.engine.sources import SourceSet
    from gitopsd.errors import PermanentError, leaf_error
    from gitopsd.plugins import event_bus
    from gitopsd.state import StateDir
    from gitopsd.statestore.factory import open_store

    sources = SourceSet(cfg, offline=args.offline)
    try:
        rendered = await Reconciler(cfg, _schema_only(), sources).reconcile(app, Mode.RENDER)
    finally:
        sources.close()
    if not rendered.ok:
        raise PermanentError(f"app {app.name} ({rendered.reason}): {rendered.message}")
    bus = event_bus(cfg.plugins)  # approval_decided goes to the notifiers
    try:
        async with (
            bus.running(),
            open_store(cfg) as store,
            EcsBackend(cfg.aws, StateDir(cfg.daemon.state_dir)) as backend,
        ):
            approvals = Approvals(cfg, backend, store, events=bus)
            return list(
                await approvals.decide(
                    app,
                    rendered.resources,
                    approve=not args.reject,
                    by=by,
                    reason=args.reason or "",
                    service=args.service,
                )
            )
    except BaseExceptionGroup as group:  # the event bus's task group wraps what decide raised
        raise leaf_error(group) from None


async def _history(
    cfg: Config, app: AppConfig, args: argparse.Namespace
) -> list[dict[str, object]]:
    from gitopsd.backends.ecs.backend import EcsBackend as Backend
    from gitopsd.engine.approvals import DecisionRecord, read_decisions
    from gitopsd.engine.reconcile import Mode, Reconciler
    from gitopsd.engine.sources import SourceSet
    from gitopsd.state import StateDir
    from gitopsd.statestore.factory import open_store

    sources = SourceSet(cfg, offline=args.offline)
    try:
        reconciler = Reconciler(cfg, _schema_only(), sources)
        (rendered,) = [await reconciler.reconcile(app, Mode.RENDER)]
        services = [r.name for r in rendered.resources if r.kind == "Service"]
        async with Backend(cfg.aws, StateDir(cfg.daemon.state_dir)) as backend:
            entries = await backend.history(app, services, limit=args.limit)
        async with open_store(cfg) as store:  # decisions on paused hooks, by deployment
            decided: dict[str, list[DecisionRecord]] = {}
            for d in await read_decisions(store, app.name):
                decided.setdefault(d.deployment, []).append(d)
        rows: list[dict[str, object]] = []
        for e in entries:
            rows.append(
                {
                    "service": e.service,
                    "commit": e.commit,
                    "message": sources.commit_message(app.source, e.commit),
                    "task_definition": e.task_definition,
                    "outcome": e.outcome,
                    "started_at": e.started_at,
                    "duration": e.duration,
                    "reason": e.reason,
                    "service_deployment": e.service_deployment_arn,
                    "approvals": [
                        d.to_json() for d in decided.get(e.service_deployment_arn or "-", [])
                    ],
                }
            )
        return rows
    finally:
        sources.close()


class _SchemaOnly:
    """The ECS backend's manifest schema and nothing else: enough to render (``validate``,
    ``render``, the render step of ``history`` and ``rollback``) without importing the AWS
    client, which a render never calls."""

    @property
    def schema(self) -> Schema:
        from gitopsd.backends.ecs.schema import ecs_schema

        return ecs_schema()


def _schema_only() -> Backend:
    return cast("Backend", _SchemaOnly())  # the Reconciler asks only for .schema to render


def _backend(
    cfg: Config,
    mode: Mode,
    progress: Callable[[str, str], None] | None,
    gate_plugins: GatePlugins | None = None,
) -> contextlib.AbstractAsyncContextManager[Backend]:
    """The ECS backend a pass of ``mode`` needs: a render needs only the schema."""
    import contextlib

    from gitopsd.engine.reconcile import Mode

    if mode is Mode.RENDER:
        return contextlib.nullcontext(_schema_only())
    from gitopsd.backends.ecs.backend import EcsBackend
    from gitopsd.state import StateDir

    return EcsBackend(
        cfg.aws,
        StateDir(cfg.daemon.state_dir),
        poll_interval=cfg.daemon.rollout_poll_interval,
        progress=progress,
        gate_plugins=gate_plugins,
    )


def cmd_history(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.output import Painter, dump_json, format_history

    cfg = _load(args)
    app = cfg.app(args.app)
    rows = anyio.run(_history, cfg, app, args)
    if args.output == "json":
        print(dump_json({"app": app.name, "history": rows}))
        return EXIT_OK
    paint = Painter(sys.stdout, args.color)
    print(format_history(rows, paint))
    return EXIT_OK


async def _rollback(cfg: Config, app: AppConfig, args: argparse.Namespace) -> tuple[str, list[Any]]:
    import contextlib

    from gitopsd.backends.ecs.backend import EcsBackend, roll_back_to
    from gitopsd.control import AgentUnreachable, send_control
    from gitopsd.engine.reconcile import Mode, Reconciler
    from gitopsd.engine.sources import SourceSet
    from gitopsd.output import Painter
    from gitopsd.state import StateDir
    from gitopsd.statestore import AGENT, update
    from gitopsd.statestore.factory import open_store

    sources = SourceSet(cfg, offline=args.offline)
    paint = Painter(sys.stdout, args.color)
    try:
        reconciler = Reconciler(cfg, _schema_only(), sources)
        rendered = await reconciler.reconcile(app, Mode.RENDER)
        services = [r.name for r in rendered.resources if r.kind == "Service"]
    finally:
        sources.close()

    def progress(key: str, message: str) -> None:
        print(paint(f"    {key}: {message}", "dim"), flush=True)

    state = StateDir(cfg.daemon.state_dir)
    async with EcsBackend(
        cfg.aws, state, poll_interval=cfg.daemon.rollout_poll_interval, progress=progress
    ) as backend:
        commit, targets = await backend.rollback_targets(app, services, args.to)
        with contextlib.suppress(AgentUnreachable):  # a running agent stops applying it first
            await send_control(_socket(args), {"action": "suspend", "app": app.name})
        lock = state.lock(app.name)
        await lock.acquire(cfg.daemon.lock_timeout)
        try:
            async with open_store(cfg) as store:  # the agent's record: it stays suspended
                await update(store, AGENT, app.name, lambda d: {**d, "suspended": True})
            print(f"app {app.name}: rolling back to {commit[:12]}; automatic sync suspended")
            statuses = await roll_back_to(backend, app, targets, app.sync.timeout)
        finally:
            lock.release()
    return commit, list(statuses)


def cmd_rollback(args: argparse.Namespace) -> int:
    import anyio

    from gitopsd.output import Painter

    cfg = _load(args)
    app = cfg.app(args.app)
    _, statuses = anyio.run(_rollback, cfg, app, args)
    paint = Painter(sys.stdout, args.color)
    for r in statuses:
        print(paint(f"  rollout {r.key}: {r.state}: {r.message}", "green" if r.ok else "red"))
    print(f"app {app.name} stays suspended: `gitopsd resume {app.name}` lets Git drive it again")
    return EXIT_OK if all(r.ok for r in statuses) else EXIT_ERROR


def cmd_plugins(args: argparse.Namespace) -> int:
    from gitopsd import config_source
    from gitopsd.plugins import PluginRegistry, format_plugins

    source = config_source.resolve(args.config)
    options = config_source.load(source).plugins if source.exists() else {}
    registry = PluginRegistry.discover(options)
    print(format_plugins(registry), end="")
    registry.configure()  # a plugin refusing its options is a configuration error (exit 2)
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    print(f"gitopsd {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=None,
        help="the TOML configuration file (default: the TOML text in $GITOPSD_CONFIG_TOML, or "
        "the SSM parameter $GITOPSD_CONFIG_SSM, else the file $GITOPSD_CONFIG or ./gitopsd.toml)",
    )
    common.add_argument(
        "--log-level",
        default=os.environ.get("GITOPSD_LOG_LEVEL"),
        help="debug, info, warning, error (default: $GITOPSD_LOG_LEVEL, [log].level, warning)",
    )
    common.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default=None,
        help="default: [log].format, else console on a terminal and JSON otherwise",
    )
    common.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    common.add_argument(
        "--agent",
        metavar="URL",
        help="a remote agent (started with [http].control_token_env; token from "
        "$GITOPSD_AGENT_TOKEN) instead of the local control socket",
    )

    with_dir = argparse.ArgumentParser(add_help=False)
    with_dir.add_argument(
        "--dir",
        metavar="DIR",
        help="read manifests from this directory instead of the Git sources (pre-commit checks)",
    )
    with_dir.add_argument(
        "--offline",
        action="store_true",
        help="do not contact the Git remotes: use the commits last fetched (said to be stale)",
    )
    with_output = argparse.ArgumentParser(add_help=False)
    with_output.add_argument("-o", "--output", choices=["text", "json"], default="text")

    parser = argparse.ArgumentParser(
        prog="gitopsd",
        description="GitOps for Amazon ECS: Git is the source of truth for task definitions "
        "and services.",
    )
    parser.add_argument("--version", action="version", version=f"gitopsd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "validate",
        parents=[common, with_dir],
        help="render and validate every app's manifests offline",
    )
    p.add_argument("apps", nargs="*", metavar="APP")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "render",
        parents=[common, with_dir],
        help="print an app's final documents (after overlays and variables)",
    )
    p.add_argument("app", metavar="APP")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "diff",
        parents=[common, with_dir, with_output],
        help="show what sync would change; exit 0 in sync, 1 changes, 2 error",
    )
    p.add_argument("apps", nargs="*", metavar="APP")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "sync",
        parents=[common, with_dir, with_output],
        help="apply the difference, then verify the rollout",
    )
    p.add_argument("apps", nargs="*", metavar="APP")
    p.add_argument("--dry-run", action="store_true", help="plan only; make no write call")
    p.add_argument("--no-wait", action="store_true", help="do not wait for rollouts to finish")
    p.add_argument(
        "--confirm-prune",
        action="store_true",
        help="prune even more than sync.prune_max_share of an app's services",
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("run", parents=[common], help="run the agent (reconcile loop, HTTP server)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        parents=[common, with_output],
        help="each app's revision, sync, health and last error (from the agent, else from AWS)",
    )
    p.set_defaults(func=cmd_status, dir=None, offline=False)

    p = sub.add_parser("reconcile", parents=[common], help="ask the agent to reconcile an app now")
    p.add_argument("app", metavar="APP")
    p.add_argument("--force", action="store_true", help="also retry a commit whose rollout failed")
    p.set_defaults(func=cmd_reconcile)

    for name, func, text in (
        ("suspend", cmd_suspend, "stop the agent applying an app (persisted)"),
        ("resume", cmd_resume, "let the agent apply a suspended app again"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("app", metavar="APP")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "approve",
        parents=[common],
        help="continue (or --reject: roll back) an app's deployments paused at PAUSE hooks",
    )
    p.add_argument("app", metavar="APP")
    p.add_argument("--reject", action="store_true", help="roll the paused deployments back instead")
    p.add_argument("--service", metavar="NAME", help="only this service's paused deployment")
    p.add_argument(
        "--by", metavar="WHO", help="who decides, kept in the history (default: user@host)"
    )
    p.add_argument("--reason", metavar="TEXT", help="why, kept in the history")
    p.add_argument("--offline", action="store_true", help="do not fetch Git")
    p.set_defaults(func=cmd_approve, dir=None)

    p = sub.add_parser(
        "history",
        parents=[common, with_output],
        help="an app's deployments as ECS keeps them: commit, outcome, duration",
    )
    p.add_argument("app", metavar="APP")
    p.add_argument("--limit", type=int, default=20, help="deployments per service (default 20)")
    p.add_argument("--offline", action="store_true", help="do not fetch Git")
    p.set_defaults(func=cmd_history, dir=None)

    p = sub.add_parser(
        "rollback",
        parents=[common],
        help="deploy an earlier revision and suspend automatic sync of the app",
    )
    p.add_argument("app", metavar="APP")
    p.add_argument(
        "--to",
        metavar="REVISION",
        help="commit (7+ hex digits); default: the last one that completed",
    )
    p.add_argument("--offline", action="store_true", help="do not fetch Git")
    p.set_defaults(func=cmd_rollback, dir=None)

    p = sub.add_parser(
        "plugins", parents=[common], help="the plugins and backends found through entry points"
    )
    p.set_defaults(func=cmd_plugins)

    from gitopsd import config_cli

    config_cli.register(sub, common)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version, bare=True)  # bare: no logging set-up, nothing to redact

    from gitopsd.local_aws import command as local_aws_command

    local_aws_command.register(sub)
    from gitopsd.iam import command as iam_command

    iam_command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "bare", False):
        code: int = args.func(args)
        return code
    from gitopsd.errors import ConfigError, GitopsdError
    from gitopsd.output import redacted_stdio
    from gitopsd.telemetry.logs import configure_logging

    try:
        configure_logging(
            getattr(args, "log_level", None) or "warning",
            getattr(args, "log_format", None) or "auto",
        )
    except ValueError as exc:
        parser.error(str(exc))
    with redacted_stdio():  # no secret in anything a command prints (gitopsd.redact)
        try:
            code = args.func(args)
        except (ConfigError, GitopsdError) as exc:
            print(f"gitopsd: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except Interrupted as stop:
            print(f"gitopsd: interrupted by {signal.Signals(stop.signum).name}", file=sys.stderr)
            return stop.code
        except KeyboardInterrupt:
            return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
