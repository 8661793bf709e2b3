"""The one-command demo: gitopsd doing its real job against a local ECS endpoint.

``make demo`` (``python -m gitopsd.demo``) needs no AWS account. It starts the
local ECS endpoint (``gitopsd local-aws``), builds a Git repository from
``examples/``, and runs the real ``gitopsd`` commands while narrating:

1. validate the manifests and sync them (task definitions and services created);
2. sync again: nothing to do, zero write calls;
3. commit a new image: the diff shows that one field, the rollout is followed to COMPLETED;
4. commit an image that cannot start: the rollout fails, ECS's circuit breaker rolls it
   back, gitopsd reports it and alerts;
5. change the service behind Git's back: the drift is reported, and healed by sync.

Everything lives in a temporary directory that is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from gitopsd.local_aws.testing import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, LocalAws

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EXAMPLE_CONFIG = ROOT / "config" / "example.toml"
FAIL_PATTERN = "*:broken*"

_TTY = sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _style(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def say(text: str) -> None:
    print("\n" + _style(textwrap.dedent(text).strip(), "1;36"), flush=True)


def step(n: int, title: str) -> None:
    print("\n" + _style(f"=== {n}. {title} ", "1;35").ljust(72, "="), flush=True)


def example_config(
    source_url: str,
    endpoint_url: str,
    *,
    state_dir: str = "state",
    poll: str = "0.5s",
    timeout: str = "5m",
) -> str:
    """``config/example.toml`` pointed at a repository and an endpoint.

    The demo and the end-to-end tests run the configuration the project ships,
    so what a user copies is what is exercised.
    """
    text = EXAMPLE_CONFIG.read_text()
    for key, value in (
        ("url", source_url),
        ("endpoint_url", endpoint_url),
        ("state_dir", state_dir),
        ("rollout_poll_interval", poll),
        ("timeout", timeout),
    ):
        text, count = re.subn(
            rf'^(\s*){key} = "[^"]*"', rf'\g<1>{key} = "{value}"', text, flags=re.M
        )
        if not count:
            raise ValueError(f"{EXAMPLE_CONFIG} has no {key!r} to set")
    return text


class Demo:
    def __init__(self, workdir: Path, aws: LocalAws) -> None:
        self.work = workdir
        self.aws = aws
        self.repo = workdir / "deploy"
        self.bare = workdir / "deploy.git"
        self.config = workdir / "gitopsd.toml"

    # -- helpers ---------------------------------------------------------------
    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME="Demo",
            GIT_AUTHOR_EMAIL="demo@example.com",
            GIT_COMMITTER_NAME="Demo",
            GIT_COMMITTER_EMAIL="demo@example.com",
        )
        out = subprocess.run(
            ["git", *args],
            cwd=cwd or self.repo,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "main")
        sha = self.git("rev-parse", "--short", "HEAD")
        print(_style(f"$ git commit -m {message!r} && git push   # {sha}", "33"), flush=True)

    def gitopsd(self, *args: str, expect: Sequence[int] = (0,)) -> int:
        print(_style(f"$ gitopsd {' '.join(args)}", "33"), flush=True)
        # The local endpoint accepts any credentials; real ones are never needed here.
        env = dict(
            os.environ,
            GITOPSD_CONFIG=str(self.config),
            AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
        )
        env.pop("AWS_PROFILE", None)
        code = subprocess.run(
            [sys.executable, "-m", "gitopsd", *args, "--color", "always" if _TTY else "never"],
            env=env,
            check=False,
        ).returncode
        print(_style(f"(exit status {code})", "2"), flush=True)
        if code not in expect:
            raise SystemExit(f"demo: 'gitopsd {' '.join(args)}' exited {code}, expected {expect}")
        return code

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.repo / rel
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"demo: {rel} does not contain {old!r}")
        path.write_text(text.replace(old, new))

    # -- the story -------------------------------------------------------------
    def setup(self) -> None:
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=self.work)
        self.git("init", "-q", "-b", "main", str(self.repo), cwd=self.work)
        shutil.copytree(EXAMPLES / "apps", self.repo / "apps")
        self.git("remote", "add", "origin", str(self.bare))
        self.commit("Add the web and worker apps")
        self.aws.create_cluster("demo")
        self.config.write_text(
            example_config(f"file://{self.bare}", self.aws.endpoint_url, timeout="2m")
        )

    def run(self) -> None:
        step(0, "Set-up")
        say(
            f"""
            A local ECS endpoint runs at {self.aws.endpoint_url} (moto, with ECS deployments
            simulated: tasks start over time; images matching {FAIL_PATTERN!r} never start).
            A Git repository was built from examples/: apps 'web' (with a production
            overlay) and 'worker'. The config is {self.config}.
            """
        )
        self.setup()

        step(1, "Validate and sync from Git")
        self.gitopsd("validate")
        self.gitopsd("diff", expect=(1,))
        self.aws.clear_calls()
        self.gitopsd("sync")
        writes = self._writes()
        say(f"The first sync made {len(writes)} write calls: {', '.join(writes)}.")

        step(2, "Sync again: nothing to do")
        self.aws.clear_calls()
        self.gitopsd("sync")
        self.gitopsd("diff")
        writes = self._writes()
        say(f"Write calls made by the second sync and the diff: {len(writes)}.")
        if writes:
            raise SystemExit(f"demo: the second sync wrote {writes}")

        step(3, "A commit changes the web image")
        self.edit("apps/web/base/task-definition.yaml", "nginx:1.27", "nginx:1.28")
        self.commit("web: nginx 1.28")
        self.gitopsd("diff", "web", expect=(1,))
        self.gitopsd("sync", "web")
        say("One new task-definition revision, one service updated, rollout COMPLETED.")

        step(4, "A commit with an image that cannot start")
        self.edit("apps/web/base/task-definition.yaml", "nginx:1.28", "nginx:broken")
        self.commit("web: try a broken build")
        self.gitopsd("sync", "web", expect=(2,))
        say(
            """
            The new tasks failed to start; the deployment circuit breaker marked the
            rollout FAILED and ECS rolled the service back to the last good revision.
            gitopsd judged the outcome by the PRIMARY deployment (not by "stable"),
            reported the rollback and raised an alert (the ALERT line above).
            """
        )
        self.edit("apps/web/base/task-definition.yaml", "nginx:broken", "nginx:1.28")
        self.commit("web: back to nginx 1.28")
        self.gitopsd("sync", "web")

        step(5, "A change made behind Git's back")
        ecs = self.aws.boto3_client("ecs")
        ecs.update_service(cluster="demo", service="worker", desiredCount=4)
        print(_style("$ aws ecs update-service --service worker --desired-count 4", "33"))
        self.gitopsd("diff", expect=(1,))
        say("gitopsd reports the drift field by field. Sync heals it:")
        self.gitopsd("sync")
        self.gitopsd("diff")
        say("Live state matches Git again. That is gitopsd.")

    def _writes(self) -> list[str]:
        return [c for c in self.aws.calls() if not c.startswith(("Describe", "List", "Get"))]


def main() -> int:
    if shutil.which("git") is None:
        print("demo: the git command is needed (apt-get install git)", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gitopsd-demo-") as tmp:
        try:
            with LocalAws() as aws:
                aws.configure(pace=4.0, fail_images=[FAIL_PATTERN])
                Demo(Path(tmp), aws).run()
        except KeyboardInterrupt:
            print("\ndemo: interrupted; cleaned up", file=sys.stderr)
            return 130
    print(_style(f"\nDemo finished in {time.monotonic() - started:.0f}s.", "1;32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
