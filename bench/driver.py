"""Drive gitopsd's engine in-process, pass after pass, the way the agent does.

``python -m bench.driver CONFIG ENDPOINT`` builds the ECS backend and a
:class:`~gitopsd.engine.reconcile.Reconciler` once (as ``gitopsd run`` does in
:mod:`gitopsd.engine.agent`), fetches the source once (the agent's poller), then
runs ``--passes`` passes over every app concurrently (``max_parallel_apps``), each
pinned to that commit, as a steady-state drift check (``--mode plan``, the
default ``drift = "warn"``) or a sync. Before each pass it clears the endpoint's
call log and after it reads it back, so each pass's AWS calls are counted on the
server side. It prints one JSON object: ``{"passes": [{"seconds", "calls"}...]}``.

``--unpaced`` switches gitopsd's own write pacing off (to seed a large fleet
fast; never used for a figure that is compared).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import anyio


def endpoint_calls(endpoint: str, method: str = "GET") -> list[str]:
    """The local endpoint's call log (``DELETE`` clears it and returns ``[]``)."""
    request = urllib.request.Request(f"{endpoint}/_gitopsd/calls", method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        raw = response.read()
    if method != "GET":
        return []
    return list(json.loads(raw)["calls"])


def disable_pacing() -> None:
    """Make every pacing reservation free (seeding only)."""
    from gitopsd.backends.ecs import pacing

    for value in vars(pacing).values():
        if isinstance(value, type) and callable(getattr(value, "reserve", None)):
            value.reserve = lambda self, *args, **kwargs: 0.0  # type: ignore[attr-defined]


async def drive(config_path: Path, endpoint: str, passes: int, mode_name: str) -> dict[str, Any]:
    from gitopsd import config_source
    from gitopsd.backends.ecs.backend import EcsBackend
    from gitopsd.engine.reconcile import Mode, Reconciler
    from gitopsd.engine.sources import SourceSet
    from gitopsd.state import StateDir
    from gitopsd.statestore.factory import open_store

    cfg = config_source.load(config_source.resolve(str(config_path)))
    mode = Mode(mode_name)
    sources = SourceSet(cfg)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        async with (
            open_store(cfg) as store,
            EcsBackend(cfg.aws, StateDir(cfg.daemon.state_dir)) as backend,
        ):
            reconciler = Reconciler(cfg, backend, sources, wait=False, store=store)
            limiter = anyio.CapacityLimiter(cfg.daemon.max_parallel_apps)
            revisions = {s.name: await sources.revision(s.name) for s in cfg.sources}
            for _ in range(passes):
                endpoint_calls(endpoint, "DELETE")
                started = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for app in cfg.apps:

                        async def one(app: Any = app) -> None:
                            outcome = await reconciler.reconcile(
                                app, mode, limiter=limiter, revision=revisions[app.source]
                            )
                            if not outcome.ok:
                                failures.append(f"{app.name}: {outcome.message}")

                        tg.start_soon(one)
                seconds = time.perf_counter() - started
                calls = Counter(endpoint_calls(endpoint))
                results.append({"seconds": seconds, "calls": dict(sorted(calls.items()))})
    finally:
        sources.close()
    return {"passes": results, "failures": failures[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver")
    parser.add_argument("config", type=Path)
    parser.add_argument("endpoint")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--mode", choices=["plan", "sync"], default="plan")
    parser.add_argument("--unpaced", action="store_true")
    args = parser.parse_args(argv)
    if args.unpaced:
        disable_pacing()
    out = anyio.run(drive, args.config, args.endpoint, args.passes, args.mode)
    print(json.dumps(out))
    return 1 if out["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
