# syntax=docker/dockerfile:1
# One image for every Firstline service; the command chooses which one runs:
#   docker run firstline python -m services.ingest     (router, tickets, notify, gateway alike)
# Multi-stage: the build stage installs the pinned dependencies into a virtualenv, the runtime
# stage copies that virtualenv and the code, and runs as an unprivileged user. Nothing is written
# outside /tmp at run time, so the root file system can be mounted read-only.

ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first (pinned by requirements.lock), in their own layer: a code change reuses it.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -c requirements.lock -r /tmp/requirements.txt

# Then the project itself (same constraints; the dependencies are already there).
COPY shared ./shared
COPY services ./services
RUN pip install -c requirements.lock . \
 && python -m compileall -q /opt/venv

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="firstline" \
      org.opencontainers.image.description="Firstline event-sourced email helpdesk: every service, chosen by command" \
      org.opencontainers.image.source="https://example.invalid/firstline"

RUN groupadd --system --gid 10001 firstline \
 && useradd --system --uid 10001 --gid firstline --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin firstline

COPY --from=build /opt/venv /opt/venv

# The code runs from /app (first on sys.path for `python -m`), so the SQL migrations and the
# gateway's static files are read from here. Owned by root, read-only for the service user.
WORKDIR /app
COPY shared ./shared
COPY services ./services
COPY scripts ./scripts
COPY deploy/docker/healthcheck.py ./healthcheck.py
RUN python -m compileall -q /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    HTTP_HOST=0.0.0.0 \
    SMTP_HOST=0.0.0.0

USER 10001:10001
# ingest 8001 (+ SMTP 2525), router 8002, tickets 8003, notify 8004, gateway 8080
EXPOSE 8001 8002 8003 8004 8080 2525

# Liveness only (/healthz); compose and Kubernetes use /readyz for readiness themselves.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/app/healthcheck.py", "/healthz"]

# Graceful stop: uvicorn turns SIGTERM into the app's shutdown (finish the batch, commit, leave
# the group); give it the termination grace period (compose stop_grace_period, k8s 45 s).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.gateway"]
