"""The ``local-aws`` command: options, the missing-extra message, start-up lines and signals."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gitopsd.local_aws import command
from gitopsd.local_aws.testing import READY_LINE

REPO = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gitopsd")
    command.register(root.add_subparsers(dest="command"))
    return root


def test_register_adds_local_aws_with_documented_defaults() -> None:
    args = parser().parse_args(["local-aws"])
    assert args.func is command.run
    assert (args.host, args.port, args.pace, args.clock, args.region) == (
        "127.0.0.1",
        4566,
        1.0,
        "real",
        "us-east-1",
    )
    assert (args.fail_image, args.create_cluster) == ([], [])
    args = parser().parse_args(
        ["local-aws", "--fail-image", "*:bad", "--fail-image", "re:x", "--create-cluster", "a"]
    )
    assert args.fail_image == ["*:bad", "re:x"]
    assert args.create_cluster == ["a"]


def test_missing_extra_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "gitopsd.local_aws.server", None)
    assert command.run(parser().parse_args(["local-aws"])) == 2
    assert command.MISSING_EXTRA in capsys.readouterr().err
    assert command.MISSING_EXTRA == (
        "gitopsd local-aws needs the 'local' extra: pip install 'gitopsd[local]'"
    )


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.run(parser().parse_args(["local-aws", "--pace", "0"])) == 2
    assert "pace" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("signum", "entry"),
    [
        (signal.SIGTERM, ["gitopsd.local_aws"]),
        (signal.SIGINT, ["gitopsd.local_aws"]),
        (signal.SIGTERM, ["gitopsd", "local-aws"]),  # the main CLI's subcommand
    ],
)
def test_serves_until_signalled_then_exits_0(signum: signal.Signals, entry: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", *entry, "--port", "0", "--region", "eu-west-1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        # At once, before moto is imported; then once the server accepts connections.
        assert process.stdout.readline() == "local-aws: starting (loading moto) ...\n"
        line = process.stdout.readline()  # blocks until the server printed its address
        assert re.fullmatch(
            r"local-aws: ready on http://127\.0\.0\.1:\d+ \(region eu-west-1\)\n", line
        )
        match = READY_LINE.search(line)
        assert match is not None
        assert match.group(2) == "eu-west-1"
        with urllib.request.urlopen(f"{match.group(1)}/_gitopsd/health", timeout=10) as health:
            assert json.load(health)["ok"] is True  # the ready line means: accepting now
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
