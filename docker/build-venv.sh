#!/bin/sh
# Builds gitopsd's runtime virtualenv from uv.lock: what the container image ships.
#
# The Dockerfile's build stage runs this script, and so does
# tests/packaging/test_dockerfile.py (no container engine runs in the test
# setup), so the image and the test build the virtualenv with the same
# commands and cannot drift.
#
# Usage: docker/build-venv.sh TARGET_DIR [PROJECT_DIR]
#   TARGET_DIR   the virtualenv to create (e.g. /opt/gitopsd); replaced if it exists
#   PROJECT_DIR  the checkout holding pyproject.toml and uv.lock (default: .)
# Environment: UV (the uv binary, default `uv`: the version of the Makefile's
# UV_VERSION), UV_PYTHON (the interpreter the virtualenv is made from), and
# any other UV_* setting (cache, link mode).
#
# What goes in: gitopsd and its runtime dependencies exactly as locked, and the
# first-party notifier plugins under plugins/ (webhook, slack, sns; each is
# inactive until its [plugins.NAME] table is configured). Not the `local`
# extra (moto, for `gitopsd local-aws`), not the dev group, no pip. Every
# package is a regular (non-editable) install and compiled to bytecode.
set -eu

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 TARGET_DIR [PROJECT_DIR]" >&2
    exit 2
fi
target=$1
project=${2:-.}
uv=${UV:-uv}

cd "$project"
UV_PROJECT_ENVIRONMENT=$target "$uv" sync \
    --locked \
    --no-dev \
    --no-editable \
    --all-packages \
    --compile-bytecode \
    --no-progress
# The entry point must start: a broken virtualenv fails here, not in production.
"$target/bin/gitopsd" --version
