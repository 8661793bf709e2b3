# gitopsd container image (runs as an ECS service or anywhere with Docker).
# Until the long-running daemon lands, the image runs one `gitopsd sync` pass;
# schedule it (ECS scheduled task) or override the command.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY gitopsd ./gitopsd
RUN uv export --locked --no-dev --no-emit-project -o /tmp/requirements.txt \
 && python -m venv /opt/gitopsd \
 && /opt/gitopsd/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
 && /opt/gitopsd/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/gitopsd --create-home gitopsd
COPY --from=build /opt/gitopsd /opt/gitopsd
ENV PATH=/opt/gitopsd/bin:$PATH GITOPSD_CONFIG=/etc/gitopsd/gitopsd.toml
USER gitopsd
WORKDIR /var/lib/gitopsd
ENTRYPOINT ["gitopsd"]
CMD ["sync"]
