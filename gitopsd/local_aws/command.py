"""``gitopsd local-aws``: serve the simulated ECS endpoint so manifests can be tried locally.

The command is registered by :func:`register` on the main CLI and is also what
``python -m gitopsd.local_aws`` runs (the test harness starts it that way).
moto is imported only inside :func:`run`, so the base install (without the
``local`` extra) still loads the CLI and explains what to install.

On stdout, ``local-aws: starting (loading moto) ...`` comes at once (importing
moto takes seconds), then ``local-aws: ready on http://HOST:PORT (region R)``
once the server accepts connections. SIGINT or SIGTERM stop it with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

MISSING_EXTRA = "gitopsd local-aws needs the 'local' extra: pip install 'gitopsd[local]'"

DESCRIPTION = """\
Serve a local AWS endpoint (moto) whose ECS deploys services the way ECS does:
new PRIMARY deployments that start tasks at --pace and reach COMPLETED, images
matching --fail-image that never start, the deployment circuit breaker with
rollback, service events and the service deployment APIs; the BLUE_GREEN,
LINEAR and CANARY strategies (lifecycle stages, traffic weights, bake times in
--minute-seconds "minutes", AWS_LAMBDA hooks failing per --fail-hook, PAUSE
hooks answered with ContinueServiceDeployment); deployment alarms read from the
same endpoint's CloudWatch (set-alarm-state drives them). Point any AWS client
at it with --endpoint-url http://HOST:PORT and dummy credentials.

--fail-image patterns are shell globs matched against the whole image string
('*:broken', 'registry.example/app:*'); prefix a pattern with 're:' for a
Python regular expression searched in the image ('re:^nginx:1\\.2').
Control endpoints (reset, settings, manual clock, faults) live under /_gitopsd/.
It prints "local-aws: ready on http://HOST:PORT (region R)" once it accepts
connections (or poll GET /_gitopsd/health); Ctrl-C or SIGTERM stop it (exit 0).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``local-aws`` (shared with ``python -m gitopsd.local_aws``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=4566,
        help="port to bind, 0 for any free port (default %(default)s)",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="tasks that start (or fail) per second per deployment (default %(default)s)",
    )
    parser.add_argument(
        "--fail-image",
        action="append",
        default=[],
        metavar="PATTERN",
        help="container image that never starts: glob, or 're:REGEX' (repeatable)",
    )
    parser.add_argument(
        "--minute-seconds",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="simulated seconds in one configured minute: bake times, hook timeouts "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--fail-hook",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="AWS_LAMBDA lifecycle hooks whose hookTargetArn contains it answer FAILED "
        "(repeatable)",
    )
    parser.add_argument(
        "--clock",
        choices=("real", "manual"),
        default="real",
        help="'real': time runs; 'manual': time moves only via POST /_gitopsd/advance",
    )
    parser.add_argument("--region", default="us-east-1", help="region for --create-cluster")
    parser.add_argument(
        "--create-cluster",
        action="append",
        default=[],
        metavar="NAME",
        help="ECS cluster to create at start (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``local-aws`` subcommand to the main CLI."""
    parser = subparsers.add_parser(
        "local-aws",
        help="serve a local ECS endpoint that simulates deployments",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 then, 2 on bad options or a missing extra."""
    from gitopsd.local_aws.runtime import Runtime
    from gitopsd.local_aws.settings import SettingsError, SimSettings

    try:
        settings = SimSettings.create(
            pace=args.pace,
            fail_images=args.fail_image or [],
            clock=args.clock,
            minute_seconds=args.minute_seconds,
            fail_hooks=args.fail_hook or [],
        )
    except SettingsError as exc:
        print(f"local-aws: {exc}", file=sys.stderr)
        return 2
    print("local-aws: starting (loading moto) ...", flush=True)
    try:
        from gitopsd.local_aws.server import build_server
    except ImportError as exc:
        print(f"{MISSING_EXTRA} ({exc})", file=sys.stderr)
        return 2
    runtime = Runtime(settings, region=args.region, startup_clusters=args.create_cluster or [])
    try:
        server = build_server(args.host, args.port, runtime, verbose=args.verbose)
    except OSError as exc:
        print(f"local-aws: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]

    def announce() -> None:
        print(f"local-aws: ready on http://{host}:{port} (region {args.region})", flush=True)

    serve_until_signalled(server, announce)
    return 0


def serve_until_signalled(server: Any, on_ready: Callable[[], None] = lambda: None) -> None:
    """Serve in a thread until SIGINT/SIGTERM, then shut down.

    ``on_ready`` runs once the signal handlers are in place and the server is
    accepting, so whoever waits for it may signal right away.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="local-aws", daemon=True)
    thread.start()
    try:
        on_ready()
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
