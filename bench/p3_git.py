"""P3, Git: gitopsd's source against the git CLI, over git:// and smart HTTP.

On a generated repository of ``commits`` commits (built in seconds with ``git
fast-import``: a first commit of 200 manifests, then one changed file a commit),
served by ``git daemon`` and by ``git http-backend`` (tests/support/gitserver.py),
each through a :class:`bench.servers.ByteCounter` relay, alternately and
``repeat`` times:

* **no-op poll**: gitopsd's fetch with a warm cache and nothing new, vs ``git
  ls-remote``;
* **one-commit fetch**: a commit is pushed, then gitopsd's fetch and ``git fetch``
  into an up-to-date bare clone both fetch it;
* **initial clone**: gitopsd's fetch into an empty cache vs ``git clone --bare``.

gitopsd's fetch runs in its own process (:mod:`bench.gitworker`, warm, timed
in-process as the agent's poller runs it); the git CLI's time is its process's.
Bytes are counted on the wire, both directions. Goals (issue 10): no-op poll at
most 0.5x ``git ls-remote``, one-commit fetch at most 0.75x ``git fetch``, over
both transports; initial clone at most 1.5x ``git clone --bare``; bytes
proportional to the change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bench.servers import (
    ROOT,
    ByteCounter,
    GitDaemon,
    GitHttpServer,
    GitRepo,
    git_env,
    make_repo,
    run_git,
)
from bench.stats import Samples, compare

FILES = 200


def fast_import_stream(commits: int) -> bytes:
    """A ``git fast-import`` stream: ``commits`` commits on ``refs/heads/main``."""
    out: list[bytes] = []
    when = 1_700_000_000
    for n in range(commits):
        out.append(b"commit refs/heads/main\n")
        out.append(b"committer Bench <bench@example.com> %d +0000\n" % (when + n))
        message = b"commit %d\n" % n
        out.append(b"data %d\n%s" % (len(message), message))
        names = range(FILES) if n == 0 else range(n % FILES, n % FILES + 1)
        for i in names:
            body = b"kind: Note\nname: f%03d\nrevision: %d\n" % (i, n) + b"x: padding\n" * 20
            out.append(b"M 100644 inline apps/bench/f%03d.yaml\n" % i)
            out.append(b"data %d\n%s\n" % (len(body), body))
    return b"".join(out)


def build_repository(work: Path, commits: int) -> GitRepo:
    repo = make_repo(work)
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=work,
        input=fast_import_stream(commits),
        env=git_env(),
        check=True,
    )
    repo.git("checkout", "-q", "-f", "main")
    return repo


class Worker:
    """A running :mod:`bench.gitworker` for one URL."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gitworker", url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=git_env(dict(os.environ)),
        )

    def fetch(self, root: Path) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        stdout: IO[str] | None = self.proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(f"fetch {root}\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"bench.gitworker exited {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _git(*args: str, cwd: Path) -> float:
    started = time.perf_counter()
    run_git(*args, cwd=cwd)
    return time.perf_counter() - started


def _bytes_median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2] if values else 0


def one_transport(
    url: str, counter: ByteCounter, repo: GitRepo, scratch: Path, repeat: int
) -> dict[str, Any]:
    worker = Worker(url)
    result: dict[str, Any] = {}
    try:
        # Initial clone.
        ours, base = Samples(), Samples()
        ours_b: list[int] = []
        base_b: list[int] = []

        def clone_ours(i: int) -> None:
            root = scratch / f"ours-clone-{i}"
            counter.reset()
            ours.add(worker.fetch(root)["seconds"])
            ours_b.append(counter.total)

        def clone_git(i: int) -> None:
            target = scratch / f"git-clone-{i}.git"
            counter.reset()
            base.add(_git("clone", "-q", "--bare", url, str(target), cwd=scratch))
            base_b.append(counter.total)

        _alternate(repeat, clone_ours, clone_git)
        result["clone"] = {**compare(ours, base), "bytes": _bytes_pair(ours_b, base_b)}
        warm = scratch / "ours-clone-0"
        mirror = scratch / "git-clone-0.git"

        # No-op poll.
        ours, base = Samples(), Samples()
        ours_b, base_b = [], []

        def poll_ours(_: int) -> None:
            counter.reset()
            ours.add(worker.fetch(warm)["seconds"])
            ours_b.append(counter.total)

        def poll_git(_: int) -> None:
            counter.reset()
            base.add(_git("ls-remote", url, "refs/heads/main", cwd=scratch))
            base_b.append(counter.total)

        poll_ours(-1)  # the worker's first use of this cache opens it
        ours.values.clear()
        ours_b.clear()
        _alternate(repeat, poll_ours, poll_git)
        result["noop_poll"] = {**compare(ours, base), "bytes": _bytes_pair(ours_b, base_b)}

        # One-commit fetch: both fetch the same new commit.
        ours, base = Samples(), Samples()
        ours_b, base_b = [], []
        for i in range(repeat):
            repo.write("apps/bench/new.yaml", f"kind: Note\nname: new\nrevision: {i}\n")
            repo.commit(f"one more {i}")
            repo.push()
            order: list[Callable[[], None]] = []

            def fetch_ours() -> None:
                counter.reset()
                ours.add(worker.fetch(warm)["seconds"])
                ours_b.append(counter.total)

            def fetch_git() -> None:
                counter.reset()
                base.add(_git("fetch", "-q", url, "+refs/heads/main:refs/heads/main", cwd=mirror))
                base_b.append(counter.total)

            order = [fetch_ours, fetch_git] if i % 2 == 0 else [fetch_git, fetch_ours]
            for step in order:
                step()
        result["one_commit_fetch"] = {
            **compare(ours, base),
            "bytes": _bytes_pair(ours_b, base_b),
        }
    finally:
        worker.close()
    return result


def _bytes_pair(ours: list[int], base: list[int]) -> dict[str, Any]:
    a, b = _bytes_median(ours), _bytes_median(base)
    return {"gitopsd": a, "git": b, "ratio": round(a / b, 3) if b else None}


def _alternate(repeat: int, ours: Callable[[int], None], base: Callable[[int], None]) -> None:
    for i in range(repeat):
        if i % 2 == 0:
            ours(i)
            base(i)
        else:
            base(i)
            ours(i)


def measure(workdir: Path, commits: int, repeat: int) -> dict[str, Any]:
    """P3 over git:// and HTTP on a fresh repository of ``commits`` commits."""
    started = time.perf_counter()
    served = workdir / "p3-served"
    repo = build_repository(workdir / "p3-work", commits)
    repo.publish(served / "big.git")
    built = time.perf_counter() - started
    out: dict[str, Any] = {"commits": commits, "build_seconds": round(built, 2)}
    with GitDaemon(served) as daemon, ByteCounter(daemon.port) as relay:
        scratch = workdir / "p3-git"
        scratch.mkdir()
        out["git"] = one_transport(
            f"git://127.0.0.1:{relay.port}/big.git", relay, repo, scratch, repeat
        )
        shutil.rmtree(scratch)
    with GitHttpServer(served) as http, ByteCounter(http.port) as relay:
        scratch = workdir / "p3-http"
        scratch.mkdir()
        out["http"] = one_transport(
            f"http://127.0.0.1:{relay.port}/big.git", relay, repo, scratch, repeat
        )
        shutil.rmtree(scratch)
    return out
