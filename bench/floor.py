"""The API floor: a minimal aiobotocore script issuing only the calls a no-op pass needs.

A no-op reconcile of N services needs ``ceil(n/10)`` DescribeServices per app
(10 names a call, tags in the same call), and nothing else once the task
definitions' ARNs are known (they are immutable). This script makes exactly
those calls at the same concurrency as gitopsd (``[aws].max_concurrency``),
with a client configured like gitopsd's (no botocore retries). P1 compares
gitopsd's wall time to it: in-process pass after pass (``--passes``) for the
daemon, and the whole process (start-up included) for the one-shot CLI.

``python -m bench.floor FLEET_JSON ENDPOINT [--passes K] [--concurrency C]``
prints ``{"passes": [{"seconds", "calls"}...]}``; FLEET_JSON maps each app to
``{"cluster", "services"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any


def floor_calls(apps: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The calls a no-op pass needs, by operation."""
    return {"DescribeServices": sum(-(-len(a["services"]) // 10) for a in apps.values())}


async def one_pass(client: Any, apps: dict[str, dict[str, Any]], limit: asyncio.Semaphore) -> int:
    async def describe(cluster: str, names: list[str]) -> None:
        async with limit:
            answer = await client.describe_services(
                cluster=cluster, services=names, include=["TAGS"]
            )
        if len(answer["services"]) != len(names):
            raise RuntimeError(f"{cluster}: {answer['failures']}")

    jobs = [
        describe(app["cluster"], app["services"][i : i + 10])
        for app in apps.values()
        for i in range(0, len(app["services"]), 10)
    ]
    await asyncio.gather(*jobs)
    return len(jobs)


async def run(
    apps: dict[str, dict[str, Any]], endpoint: str, passes: int, concurrency: int
) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, concurrency),
    )
    limit = asyncio.Semaphore(concurrency)
    results = []
    async with get_session().create_client(
        "ecs", region_name="us-east-1", endpoint_url=endpoint, config=config
    ) as client:
        for _ in range(passes):
            started = time.perf_counter()
            calls = await one_pass(client, apps, limit)
            seconds = time.perf_counter() - started
            results.append({"seconds": seconds, "calls": dict(Counter(DescribeServices=calls))})
    return {"passes": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("fleet", type=Path)
    parser.add_argument("endpoint")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    apps = json.loads(args.fleet.read_text())
    print(json.dumps(asyncio.run(run(apps, args.endpoint, args.passes, args.concurrency))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
