"""``python -m gitopsd.healthcheck``: the container's health probe, ``GET /healthz``.

The image's ``HEALTHCHECK`` (and an ECS task definition's container
``healthCheck``) run it every 30 seconds. It exists so the image needs no
``curl``, and so a probe does not start the whole CLI (which imports every
dependency, about a second of CPU): it imports the standard library only.
Exit 0 when the agent answers 200, 1 otherwise, with the reason on stderr.

The URL: ``--url``, else ``$GITOPSD_HEALTHCHECK_URL``, else ``/healthz`` on
``$GITOPSD_HTTP_ADDRESS`` (a wildcard host such as ``0.0.0.0`` is probed on
loopback), else ``http://127.0.0.1:8099/healthz``.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

DEFAULT_ADDRESS = "127.0.0.1:8099"
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "[::1]", "": "127.0.0.1"}


def probe_url(environ: Mapping[str, str]) -> str:
    """The ``/healthz`` URL the agent serves, from the environment."""
    if url := environ.get("GITOPSD_HEALTHCHECK_URL"):
        return url
    address = environ.get("GITOPSD_HTTP_ADDRESS") or DEFAULT_ADDRESS
    host, _, port = address.rpartition(":")
    host = _WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """Whether ``url`` answers 200 within ``timeout`` seconds, and what it said."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as answer:
            body = answer.read(512).decode("utf-8", "replace").strip()
            return answer.status == 200, f"{answer.status} {body}"
    except urllib.error.HTTPError as exc:
        body = exc.read(512).decode("utf-8", "replace").strip()
        return False, f"{exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gitopsd.healthcheck",
        description="Exit 0 if the local gitopsd agent's /healthz answers 200, else 1.",
    )
    parser.add_argument("--url", help="default: $GITOPSD_HEALTHCHECK_URL or $GITOPSD_HTTP_ADDRESS")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    url = args.url or probe_url(os.environ)
    ok, said = probe(url, args.timeout)
    if not ok:
        print(f"gitopsd healthcheck: {url}: {said}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
