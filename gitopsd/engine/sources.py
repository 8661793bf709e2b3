"""Where an app's files come from during one pass: a Git source, or a local directory.

Several apps usually share one repository; :class:`SourceSet` fetches each
source at most once per pass however many apps read from it, and keeps the
Git caches open between passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import anyio

from gitopsd.config import Config
from gitopsd.errors import SourceRejected
from gitopsd.model import Revision
from gitopsd.source.git import GitSource


class Source(Protocol):
    async def fetch(self) -> Revision: ...

    def read_tree(self, commit: str, prefix: str) -> dict[str, bytes]: ...

    def close(self) -> None: ...


class DirectorySource:
    """A working directory used instead of Git (``--dir``): for checks before a commit."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root

    async def fetch(self) -> Revision:
        if not self.root.is_dir():
            raise SourceRejected(f"source {self.name!r}: {self.root} is not a directory")
        return Revision(source=self.name, ref=str(self.root), commit="worktree")

    def read_tree(self, commit: str, prefix: str) -> dict[str, bytes]:
        base = self.root if prefix in ("", ".") else self.root / prefix
        if not base.exists():
            raise SourceRejected(f"path {prefix!r} does not exist in {self.root}")
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in files
            if ".git" not in p.relative_to(self.root).parts
        }

    def close(self) -> None:
        pass


class SourceSet:
    """The sources of one configuration, fetched at most once per pass."""

    def __init__(self, config: Config, *, directory: Path | None = None) -> None:
        self._sources: dict[str, Source] = {}
        for s in config.sources:
            self._sources[s.name] = (
                DirectorySource(s.name, directory)
                if directory is not None
                else GitSource(s, config.daemon.state_dir / "git")
            )
        self._locks = {name: anyio.Lock() for name in self._sources}
        self._pass: dict[str, Revision | BaseException] = {}

    def new_pass(self) -> None:
        """Forget this pass's revisions: the next ``revision`` call fetches again."""
        self._pass.clear()

    def get(self, name: str) -> Source:
        return self._sources[name]

    async def revision(self, name: str) -> Revision:
        async with self._locks[name]:
            if name not in self._pass:
                try:
                    self._pass[name] = await self._sources[name].fetch()
                except Exception as exc:  # remembered so every app of the source reports it
                    self._pass[name] = exc
            found = self._pass[name]
        if isinstance(found, BaseException):
            raise found
        return found

    def reader(self, name: str, commit: str) -> Callable[[str], Mapping[str, bytes]]:
        source = self._sources[name]

        def read(prefix: str) -> Mapping[str, bytes]:
            return source.read_tree(commit, prefix)

        return read

    def close(self) -> None:
        for s in self._sources.values():
            s.close()
