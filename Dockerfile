# electric-proxy as a sidecar: point DATABASE_URL at Postgres, clients at :65432.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app proxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config.toml /etc/electric-proxy/config.toml
ENV ELECTRIC_PROXY_CONFIG=/etc/electric-proxy/config.toml
USER proxy
WORKDIR /app
EXPOSE 65432 9432
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9432/readyz', timeout=2).status == 200 else 1)"
# SIGTERM drains: open transactions get [shutdown] drain_timeout_ms to finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["electric-proxy"]
CMD ["serve"]
