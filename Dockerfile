# syntax=docker/dockerfile:1
# gitopsd container image: the agent (`gitopsd run`), for an ECS service (Fargate or EC2)
# or any container runtime. Build, run and configure it: docs/container.md.
#
#   docker build -t gitopsd --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages: `build` makes the virtualenv from uv.lock with docker/build-venv.sh (the
# same script tests/packaging/test_dockerfile.py runs), the runtime stage copies it into
# a slim Python image with no compiler, no uv, no pip and no caches.

# The same tag in both stages: the virtualenv links to this image's /usr/local/bin/python3.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv as the Makefile pins it (UV_VERSION; a test checks they agree).
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY plugins ./plugins
COPY gitopsd ./gitopsd
COPY docker/build-venv.sh ./docker/
RUN --mount=type=cache,target=/root/.cache/uv \
    docker/build-venv.sh /opt/gitopsd /src

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0.dev0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="gitopsd" \
      org.opencontainers.image.description="GitOps agent for Amazon ECS: Git is the single source of truth for task definitions and services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${PYTHON_IMAGE}"

# openssh-client: ssh:// and scp-like Git remotes (deploy keys) run `ssh`; signed commits
# (verify.mode = "ssh") run `ssh-keygen -Y`. gpg: verify.mode = "gpg". No `git`: dulwich
# speaks HTTPS, git:// and SSH in-process, and local paths fall back to its in-process client.
# Debian package versions are not pinned: the base image tag pins the release, and the
# archive's security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client gpg \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 gitopsd \
 && useradd --system --uid 10001 --gid gitopsd --home-dir /var/lib/gitopsd --no-create-home \
        --shell /usr/sbin/nologin gitopsd \
 && install -d -o gitopsd -g gitopsd -m 0750 /var/lib/gitopsd \
 && install -d -m 0755 /etc/gitopsd

COPY --from=build /opt/gitopsd /opt/gitopsd

# GITOPSD_CONFIG: the mounted file, unless GITOPSD_CONFIG_TOML or GITOPSD_CONFIG_SSM is set.
# GITOPSD_HTTP_ADDRESS: [http].address when the configuration leaves it unset; on all
# interfaces, so the health check, webhooks and /metrics reach the agent.
ENV PATH=/opt/gitopsd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/gitopsd \
    GITOPSD_CONFIG=/etc/gitopsd/gitopsd.toml \
    GITOPSD_HTTP_ADDRESS=0.0.0.0:8099

USER 10001:10001
WORKDIR /var/lib/gitopsd
# [daemon].state_dir (the default /var/lib/gitopsd): Git cache, locks, agent state.
VOLUME ["/var/lib/gitopsd"]
EXPOSE 8099

# The agent finishes in-flight writes within [daemon].grace_period on SIGTERM, then exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "gitopsd.healthcheck"]

ENTRYPOINT ["gitopsd"]
CMD ["run"]
