"""A generated deployment repository ("the fleet") and the checks every fault test ends with.

:class:`Fleet` owns one Git work repository (served by ``git daemon``), a
gitopsd config pointing at it and at the local ECS endpoint, and the record
of every task-definition content committed per family. It runs gitopsd
three ways:

* :meth:`Fleet.gitopsd`: in-process (``gitopsd.cli.main``, stdout and stderr
  redirected): the fastest, for runs that are neither killed nor signalled;
* :meth:`Fleet.spawn`: ``python -m gitopsd ...`` as a real subprocess, for
  signals and for two processes at once;
* :meth:`Fleet.fork`: ``gitopsd.cli.main`` in a process forked from a server
  that has imported gitopsd already (:mod:`multiprocessing`'s forkserver), for
  the crash test: a real process with its own pid, file descriptors and locks,
  SIGKILLed like any other, without paying the ~2 s import for each of the
  many runs.

Everything is observed from outside gitopsd: AWS through the endpoint's call log
and a boto3 client, Git through the repository, state through the files.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from support.gitserver import GitDaemon, GitRepo

from gitopsd.cli import main
from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

CLUSTER = "faults"
SOURCE = "deploy"
APP = "fleet"
IMAGE = "public.ecr.aws/docker/library/busybox"
READ_PREFIXES = ("Describe", "List", "Get")
#: Rollout verdicts that are false when no image fails and nobody else writes.
FALSE_VERDICTS = ("ROLLED_BACK", "FAILED", "REPLACED", "TIMED_OUT")
#: Text that must never appear in any output: a bug, not a fault.
NEVER = ("internal error: ", "reconcile.internal_error", "Traceback (most recent call last)")
_ROLLOUT_LINE = re.compile(r"^\s*rollout (\S+): ([A-Z_]+): (.*)$", re.M)
_ALERT_LINE = re.compile(r"^ALERT app (\S+): (\w+)(?::|$)(.*)$", re.M)
_ERROR_LINE = re.compile(r"^\s*error \((\w+), (temporary|permanent)\): ", re.M)
STEADY_TIMEOUT = 20.0


def family_names(count: int, prefix: str = APP) -> list[str]:
    return [f"{prefix}-{i:02d}" for i in range(count)]


def manifest(family: str, image: str, desired: int) -> str:
    """One family's task definition and service, as a multi-document YAML file."""
    return (
        f"kind: TaskDefinition\n"
        f"family: {family}\n"
        f"requiresCompatibilities: [EC2]\n"
        f"containerDefinitions:\n"
        f"  - name: main\n"
        f"    image: {image}\n"
        f'    command: ["sh", "-c", "while true; do echo {family}; sleep 30; done"]\n'
        f"    memory: 128\n"
        f"---\n"
        f"kind: Service\n"
        f"serviceName: {family}\n"
        f"taskDefinition: {family}\n"
        f"desiredCount: {desired}\n"
        f"launchType: EC2\n"
        f"deploymentConfiguration:\n"
        f"  deploymentCircuitBreaker:\n"
        f"    enable: true\n"
        f"    rollback: true\n"
    )


def config_text(
    url: str,
    endpoint: str,
    apps: Sequence[str],
    *,
    max_attempts: int = 8,
    call_timeout: str = "5s",
    lock_timeout: str = "30s",
    sync_timeout: str = "30s",
) -> str:
    """A gitopsd config: one source, one app per directory ``apps/<name>``."""
    text = (
        "[aws]\n"
        'region = "us-east-1"\n'
        f'endpoint_url = "{endpoint}"\n'
        f"max_attempts = {max_attempts}\n"
        f'call_timeout = "{call_timeout}"\n'
        "\n[daemon]\n"
        'state_dir = "state"\n'
        'rollout_poll_interval = "50ms"\n'
        f'lock_timeout = "{lock_timeout}"\n'
        "\n[[sources]]\n"
        f'name = "{SOURCE}"\n'
        f'url = "{url}"\n'
        'branch = "main"\n'
        'timeout = "20s"\n'
    )
    for app in apps:
        text += (
            "\n[[apps]]\n"
            f'name = "{app}"\n'
            f'source = "{SOURCE}"\n'
            f'path = "apps/{app}"\n'
            f'cluster = "{CLUSTER}"\n'
            "  [apps.sync]\n"
            f'  timeout = "{sync_timeout}"\n'
        )
    return text


@dataclass
class Run:
    """One finished gitopsd command."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def show(self) -> str:
        return (
            f"$ gitopsd {' '.join(self.args)}  -> exit {self.code}\n"
            f"--- stdout\n{self.out}\n--- stderr\n{self.err}"
        )


def gitopsd_env() -> dict[str, str]:
    """The environment of a gitopsd subprocess: dummy credentials, no profile."""
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env["AWS_ACCESS_KEY_ID"] = DUMMY_ACCESS_KEY
    env["AWS_SECRET_ACCESS_KEY"] = DUMMY_SECRET_KEY
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- processes -----------------------------------------------------------------------------


class Proc:
    """A gitopsd process started by a test (subprocess or forked), its output in files."""

    def __init__(self, args: tuple[str, ...], out: Path, err: Path) -> None:
        self.args = args
        self.out_path = out
        self.err_path = err
        for path in (out, err):
            path.write_bytes(b"")

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def poll(self) -> int | None:
        raise NotImplementedError

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process only (never a group: it is one we started)."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gitopsd {' '.join(self.args)} still runs after {timeout}s")
            time.sleep(0.01)
        return code

    def result(self, timeout: float = 60.0) -> Run:
        code = self.wait(timeout)
        out, err = (p.read_text(errors="replace") for p in (self.out_path, self.err_path))
        return Run(self.args, code, out, err)

    def close(self) -> None:
        """Kill the process if it still runs (after a failed test) and reap it."""
        if self.poll() is None:
            self.signal(signal.SIGKILL)
            self.wait(10)


class SubProc(Proc):
    def __init__(self, args: tuple[str, ...], out: Path, err: Path, env: dict[str, str]) -> None:
        super().__init__(args, out, err)
        with out.open("wb") as fout, err.open("wb") as ferr:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "gitopsd", *args],
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        code = self._popen.poll()
        return None if code is None else _status(code)


def _status(code: int) -> int:
    """A shell-style exit status: 128 + N for a process killed by signal N."""
    return 128 - code if code < 0 else code


def _forked_main(argv: list[str], out: str, err: str, env: dict[str, str], started: str) -> None:
    """The body of a forked gitopsd process: ``python -m gitopsd`` minus the imports."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["gitopsd", *argv]
    Path(started).touch()
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as a real exit: no multiprocessing or pytest clean-up of the forkserver's


_FORKSERVER: ForkServerContext | None = None


def forkserver() -> ForkServerContext:
    """The forkserver context, its server preloading gitopsd's command line."""
    global _FORKSERVER
    if _FORKSERVER is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["gitopsd.cli", "gitopsd.backends.ecs.backend", __name__])
        _FORKSERVER = ctx
    return _FORKSERVER


class ForkedProc(Proc):
    def __init__(self, args: tuple[str, ...], out: Path, err: Path, env: dict[str, str]) -> None:
        super().__init__(args, out, err)
        self._started = out.with_suffix(".started")
        self._process: BaseProcess = forkserver().Process(
            target=_forked_main,
            args=(list(args), str(out), str(err), env, str(self._started)),
            daemon=False,
        )
        self._process.start()

    def started(self) -> bool:
        """Whether the process is about to run ``gitopsd.cli.main`` (or has)."""
        return self._started.exists()

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    def poll(self) -> int | None:
        code = self._process.exitcode
        return None if code is None else _status(code)

    def close(self) -> None:
        super().close()
        self._process.close()


# --- what the endpoint holds ---------------------------------------------------------------


def td_content(td: dict[str, Any]) -> str:
    """A task definition's content as gitopsd registers it (tags and metadata left out)."""
    containers = [
        {k: c.get(k) for k in ("name", "image", "command", "memory")}
        for c in td.get("containerDefinitions", [])
    ]
    return json.dumps(
        {
            "family": td.get("family"),
            "requiresCompatibilities": sorted(td.get("requiresCompatibilities", [])),
            "containerDefinitions": containers,
        },
        sort_keys=True,
    )


def image_of(content: str) -> str:
    image: str = json.loads(content)["containerDefinitions"][0]["image"]
    return image


@dataclass
class Revisions:
    """The registered revisions of one family: ARN -> content, oldest first."""

    family: str
    contents: dict[str, str] = field(default_factory=dict)

    @property
    def newest(self) -> str:
        return max(self.contents, key=lambda arn: int(arn.rsplit(":", 1)[1]))

    def duplicates(self) -> dict[str, list[str]]:
        """Image -> the revisions (two or more) that have the same content."""
        by_content: dict[str, list[str]] = {}
        for arn, content in self.contents.items():
            by_content.setdefault(content, []).append(label(arn))
        return {image_of(k): v for k, v in by_content.items() if len(v) > 1}


def label(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


# --- the fleet -----------------------------------------------------------------------------


class Fleet:
    """A repository of ``families`` (one task definition and one service each) and gitopsd."""

    def __init__(
        self,
        repo: GitRepo,
        daemon: GitDaemon,
        aws: LocalAws,
        workdir: Path,
        families: Sequence[str],
        app: str = APP,
    ) -> None:
        self.repo = repo
        self.daemon = daemon
        self.aws = aws
        self.workdir = workdir
        self.app = app
        self.families = list(families)
        self.config = workdir / "gitopsd.toml"
        self.state = workdir / "state"
        self.url = daemon.url("deploy")
        self.images: dict[str, str] = {}
        #: Every task-definition content (its image) committed per family, in order.
        self.committed: dict[str, list[str]] = {f: [] for f in self.families}
        self._tag = 0
        self._procs: list[Proc] = []
        self._runs = 0
        self._contents: dict[str, str] = {}
        self.configure()

    # -- config and repository

    def configure(self, **options: Any) -> None:
        self.config.write_text(config_text(self.url, self.aws.endpoint_url, [self.app], **options))

    def new_image(self) -> str:
        self._tag += 1
        return f"{IMAGE}:1.36.{self._tag}"

    def set_images(self, families: Iterable[str]) -> list[str]:
        """Give each of ``families`` a new image in the work tree (committed by ``commit``)."""
        changed = list(families)
        for family in changed:
            image = self.new_image()
            self.images[family] = image
            desired = 1 + self.families.index(family) % 2
            self.repo.write(f"apps/{self.app}/{family}.yaml", manifest(family, image, desired))
            if image not in self.committed[family]:
                self.committed[family].append(image)
        return changed

    def commit(self, message: str) -> str:
        sha = self.repo.commit(message)
        self.repo.push()
        return sha

    def change(self, families: Iterable[str], message: str) -> str:
        names = self.set_images(families)
        return self.commit(f"{message}: {', '.join(names)}")

    # -- running gitopsd

    def argv(self, command: str, *args: str) -> tuple[str, ...]:
        return (command, "-c", str(self.config), "--color", "never", *args)

    def gitopsd(self, command: str, *args: str) -> Run:
        """Run gitopsd in this process; its stdout and stderr are captured."""
        argv = self.argv(command, *args)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
        return Run(argv, code, out.getvalue(), err.getvalue())

    def _files(self) -> tuple[Path, Path]:
        self._runs += 1
        logs = self.workdir / "runs"
        logs.mkdir(exist_ok=True)
        return logs / f"{self._runs:03d}.out", logs / f"{self._runs:03d}.err"

    def spawn(self, command: str, *args: str) -> Proc:
        """``python -m gitopsd command ...`` as a subprocess."""
        proc = SubProc(self.argv(command, *args), *self._files(), gitopsd_env())
        self._procs.append(proc)
        return proc

    def fork(self, command: str, *args: str) -> ForkedProc:
        """gitopsd in a process forked from the preloaded forkserver."""
        proc = ForkedProc(self.argv(command, *args), *self._files(), gitopsd_env())
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            proc.close()

    def sync_until_ok(self, runs: int = 6, *args: str) -> list[Run]:
        """Sync until it exits 0 (at most ``runs`` times); every run, in order."""
        done: list[Run] = []
        for _ in range(runs):
            run = self.gitopsd("sync", *args)
            done.append(run)
            if run.code == 0:
                return done
        raise AssertionError(
            f"sync did not succeed in {runs} runs:\n" + "\n".join(r.show() for r in done)
        )

    # -- observing AWS

    def ecs(self) -> Any:
        return self.aws.boto3_client("ecs")

    def writes(self, calls: Sequence[str] | None = None) -> list[str]:
        return [c for c in (self.aws.calls() if calls is None else calls) if not _read(c)]

    def revisions(self, family: str) -> Revisions:
        """Every ACTIVE revision of ``family`` with its content."""
        ecs = self.ecs()
        arns: list[str] = []
        kwargs: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE"}
        while True:
            page = ecs.list_task_definitions(**kwargs)
            arns += [a for a in page["taskDefinitionArns"] if label(a).split(":")[0] == family]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        found = Revisions(family)
        for arn in sorted(arns, key=lambda a: int(a.rsplit(":", 1)[1])):
            if arn not in self._contents:  # revisions are immutable: describe each once
                td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                self._contents[arn] = td_content(td)
            found.contents[arn] = self._contents[arn]
        return found

    def services(self) -> dict[str, dict[str, Any]]:
        ecs = self.ecs()
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(self.families), 10):
            out = ecs.describe_services(cluster=CLUSTER, services=self.families[i : i + 10])
            found.update({s["serviceName"]: s for s in out["services"]})
        return found

    # -- the checks

    def check_revisions(self, *, exact: bool = True, context: str = "") -> dict[str, Revisions]:
        """No duplicate and no orphaned revision in any family.

        ``exact``: as many revisions as distinct contents committed (every commit was
        synced to completion); otherwise at most as many (a killed run may never have
        registered a content the next commit replaced).
        """
        problems: list[str] = []
        found: dict[str, Revisions] = {}
        for family in self.families:
            revs = found[family] = self.revisions(family)
            images = [image_of(c) for c in revs.contents.values()]
            dupes = revs.duplicates()
            if dupes:
                problems.append(f"{family}: duplicate revisions {dupes}")
            orphans = sorted(set(images) - set(self.committed[family]))
            if orphans:
                problems.append(f"{family}: revisions of contents never committed: {orphans}")
            wanted = len(self.committed[family])
            if (len(images) != wanted) if exact else (len(images) > wanted):
                problems.append(
                    f"{family}: {len(images)} revisions "
                    f"({', '.join(label(a) for a in revs.contents)}) for {wanted} distinct "
                    f"contents committed"
                )
        assert not problems, context + "\n  ".join(["revisions:", *problems])
        return found

    def check_converged(self, *, exact: bool = True, context: str = "") -> None:
        """In sync, no duplicates, every service steady on its family's newest revision."""
        self.aws.clear_faults()
        diff = self.gitopsd("diff")
        assert diff.code == 0, context + diff.show()
        revisions = self.check_revisions(exact=exact, context=context)
        deadline = time.monotonic() + STEADY_TIMEOUT
        while True:
            problems = self._unsteady(revisions)
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not problems, context + "\n  ".join(["services not steady:", *problems])

    def _unsteady(self, revisions: dict[str, Revisions]) -> list[str]:
        problems = []
        live = self.services()
        for family in self.families:
            svc = live.get(family)
            if svc is None or svc.get("status") != "ACTIVE":
                problems.append(f"{family}: no ACTIVE service")
                continue
            newest = revisions[family].newest
            if image_of(revisions[family].contents[newest]) != self.images[family]:
                problems.append(f"{family}: newest revision {label(newest)} is not HEAD's image")
            if svc["taskDefinition"] != newest:
                problems.append(
                    f"{family}: runs {label(svc['taskDefinition'])}, newest is {label(newest)}"
                )
            deployments = svc.get("deployments", [])
            states = [(d.get("status"), d.get("rolloutState")) for d in deployments]
            if states != [("PRIMARY", "COMPLETED")]:
                problems.append(f"{family}: deployments {states}")
        return problems

    def check_no_writes(self, context: str = "") -> None:
        """The next sync makes zero write calls."""
        self.aws.clear_faults()
        self.aws.clear_calls()
        run = self.gitopsd("sync")
        calls = self.aws.calls()
        assert run.code == 0, context + run.show()
        assert self.writes(calls) == [], context + f"writes {self.writes(calls)}\n" + run.show()


def _read(op: str) -> bool:
    return op.startswith(READ_PREFIXES)


def false_verdicts(runs: Sequence[Run]) -> list[str]:
    """Every sign, in these runs' output, of a failure that did not happen.

    False: a rollout verdict in :data:`FALSE_VERDICTS`; any rollback text; an
    ALERT line unless its run failed with a *temporary* error of that same
    reason (the faults are temporary: a run that gives up on them must say so,
    and may alert); any permanent error; and anything in :data:`NEVER`.
    """
    found: list[str] = []
    for n, run in enumerate(runs):
        where = f"run {n + 1} ({' '.join(run.args[:1])}, exit {run.code})"
        text = run.out + run.err
        for key, state, message in _ROLLOUT_LINE.findall(run.out):
            if state in FALSE_VERDICTS:
                found.append(f"{where}: rollout {key}: {state}: {message}")
        for phrase in ("rolled back", "rolling back", *NEVER):
            if phrase in text:
                found.append(f"{where}: {phrase!r} in the output")
        errors = dict(_ERROR_LINE.findall(run.out))
        for reason, kind in errors.items():
            if kind != "temporary":
                found.append(f"{where}: a permanent error ({reason})")
        for _app, reason, message in _ALERT_LINE.findall(run.err):
            if errors.get(reason) != "temporary" or reason == "RolloutFailed":
                found.append(f"{where}: ALERT {reason}:{message}")
    return found


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, *, poll: float = 0.005
) -> None:
    """Poll ``predicate`` until it holds; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
