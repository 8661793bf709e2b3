"""Helpers the Git source tests share: run a fetch, count packs, make a source to close later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

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
