"""gitopsd's Git source in a process of its own, driven line by line for P3.

The bench process runs the Git servers (threads), so gitopsd's fetch must not
share its interpreter. ``python -m bench.gitworker URL`` reads commands on stdin,
one a line, and answers each with one JSON line on stdout:

* ``fetch CACHE_ROOT``: :meth:`gitopsd.source.git.GitSource.fetch` of branch
  ``main`` with its cache under ``CACHE_ROOT`` (the same instance is reused for the
  same root, as the agent's poller does): ``{"seconds", "commit", "fetched",
  "objects", "bytes"}``. A new root is an initial clone.
* ``quit``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import anyio


async def serve(url: str, answers: IO[str]) -> None:
    from gitopsd.config import SourceConfig
    from gitopsd.source.git import GitSource

    sources: dict[str, GitSource] = {}
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        root = words[1]
        source = sources.get(root)
        if source is None:
            source = GitSource(SourceConfig(name="bench", url=url, branch="main"), Path(root))
            sources[root] = source
        started = time.perf_counter()
        revision = await source.fetch()
        seconds = time.perf_counter() - started
        stats = source.last_fetch
        answer: dict[str, Any] = {"seconds": seconds, "commit": revision.commit}
        if stats is not None:
            answer.update(fetched=stats.fetched, objects=stats.objects, bytes=stats.bytes)
        print(json.dumps(answer), file=answers, flush=True)
    for source in sources.values():
        source.close()


def main() -> int:
    answers, sys.stdout = sys.stdout, sys.stderr  # logs must not mix with the answers
    anyio.run(serve, sys.argv[1], answers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
