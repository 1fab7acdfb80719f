# chaos-upstream as a container, for a staging sidecar:
#   docker build -t chaos-upstream .
#   docker run --rm -p 8080:8080 chaos-upstream                      # serve, data port on 0.0.0.0:8080
#   docker run --rm chaos-upstream list                               # any other subcommand
# Every `serve` flag also comes from CHAOS_UPSTREAM_<FLAG> (flags win): the settings below are the
# container's defaults, to override with `docker run -e CHAOS_UPSTREAM_...` or a manifest's `env`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY chaos_upstream ./chaos_upstream
COPY scenarios ./scenarios
RUN pip install . \
    && rm -rf /build \
    && groupadd --system --gid 10001 chaos \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home --shell /usr/sbin/nologin chaos

# Not root: nothing here needs a privileged port or a file outside /data (the journal's home).
USER 10001:10001
WORKDIR /data

# The data port listens on every interface of the container; the admin API stays on loopback, where
# `chaos-upstream health` (below, and the Kubernetes probes) asks it, until you give it
# CHAOS_UPSTREAM_ADMIN_HOST=0.0.0.0 with a CHAOS_UPSTREAM_ADMIN_TOKEN (serve refuses one without the other).
ENV CHAOS_UPSTREAM_HOST=0.0.0.0 \
    CHAOS_UPSTREAM_PORT=8080 \
    CHAOS_UPSTREAM_ADMIN_PORT=9090
EXPOSE 8080 9090

# /healthz of the admin API, asked by the real CLI with the container's own CHAOS_UPSTREAM_ADMIN_* settings.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["chaos-upstream", "health"]

# SIGTERM (docker stop) stops gracefully within --grace (5 s, under docker stop's 10 s); a second signal stops at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chaos-upstream"]
CMD ["serve"]
