# electric-proxy as a sidecar: point DATABASE_URL at Postgres, clients at :65432, Prometheus at :9432.
# Build:  docker build -t electric-proxy --build-arg REVISION="$(git rev-parse HEAD)" .
# The runtime image holds a virtualenv with the locked dependencies, tini, and nothing else.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/electric-proxy/bin:$PATH
RUN python -m venv /opt/electric-proxy
WORKDIR /src
# The runtime dependencies at the versions of the locked set (requirements.lock, which CI tests and
# audits); the test tools it also pins are not installed.
COPY requirements.lock pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-compile -c requirements.lock . \
    && python -m compileall -q /opt/electric-proxy

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="electric-proxy" \
      org.opencontainers.image.description="Postgres wire-protocol proxy with a migration guard" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/electric-sql/electric-proxy"
# tini is PID 1: it forwards SIGTERM/SIGHUP to the proxy and reaps children (an embedded Postgres).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 proxy \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home proxy
COPY --from=build /opt/electric-proxy /opt/electric-proxy
ENV PATH=/opt/electric-proxy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so Kubernetes' runAsNonRoot can check it. Nothing is written but /tmp (workers > 1).
# A config file mounted at /etc/electric-proxy/config.toml is read as ./config.toml.
USER 10001:10001
WORKDIR /etc/electric-proxy
EXPOSE 65432 9432
# Liveness through the proxy's own CLI, at the configured metrics address (no curl in the image).
# Readiness (`health --ready`) is for ordering, e.g. compose's depends_on: condition: service_healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["electric-proxy", "health"]
# SIGTERM drains: open transactions get [shutdown] drain_timeout_ms to finish. SIGHUP reloads.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "electric-proxy"]
CMD ["serve"]
