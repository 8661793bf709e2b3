"""Helpers the Git source tests share: run a fetch, count packs, make a source to close later."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
from support.gitserver import GitHttpServer, HttpRequest

from gitopsd.config import SourceConfig
from gitopsd.model import Revision
from gitopsd.source import cache
from gitopsd.source.git import GitSource


def fetch(source: GitSource) -> Revision:
    return anyio.run(source.fetch)


def packs(source: GitSource) -> int:
    return len(list((source.path / "objects" / "pack").glob("*.pack")))


def make_source(sources: list[GitSource], cache_root: Path, url: str, **kwargs: Any) -> GitSource:
    """A ``GitSource`` named ``platform``; ``repack_after`` and ``git`` go to the source."""
    extra = {k: kwargs.pop(k) for k in ("repack_after", "git") if k in kwargs}
    extra.setdefault("repack_after", cache.REPACK_AFTER_PACKS)
    kwargs.setdefault("timeout", 10)
    source = GitSource(SourceConfig(name="platform", url=url, **kwargs), cache_root, **extra)
    sources.append(source)
    return source


def logged_requests(server: GitHttpServer, count: int, timeout: float = 5.0) -> list[HttpRequest]:
    """The server's request log once it holds ``count`` requests (or at the deadline).

    The server logs a request after it has sent the whole response, so a client
    that has read the response may be a moment ahead of the log.
    """
    deadline = time.monotonic() + timeout
    while len(requests := server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return requests
