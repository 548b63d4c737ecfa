# syntax=docker/dockerfile:1
#
# One image for every Fleet process:
#   docker run IMAGE                      -> fleet web --bind 0.0.0.0:8000
#   docker run IMAGE worker | scheduler | migrate | doctor
#
# Stage 1 builds a virtualenv with Fleet and its dependencies; stage 2 copies only that virtualenv and
# the source tree (Fleet reads schema.sql next to app/ at runtime) onto a clean python:3.11-slim,
# so no compiler, pip cache or build dependency reaches the final image.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /app

# Packaging metadata first, then the source. Fleet is installed in editable mode so that the package
# keeps running from /app, next to schema.sql; the same path is used in the runtime stage.
COPY pyproject.toml README.md ./
COPY app ./app
COPY webhooks ./webhooks
COPY jobs ./jobs
COPY schema.sql ./schema.sql
COPY app.yml ./app.yml

RUN pip install -e . \
    && python -m compileall -q /app/app /app/webhooks /app/jobs \
    && fleet --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="fleet" \
      org.opencontainers.image.description="Fleet GitHub App: web, worker and scheduler in one image" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PORT=8000

# Unprivileged user with a fixed uid/gid (Kubernetes runAsNonRoot needs a numeric USER).
RUN groupadd --system --gid 10001 fleet \
    && useradd --system --uid 10001 --gid fleet --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin fleet

WORKDIR /app

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

USER 10001:10001

EXPOSE 8000

# Liveness of the web process (no curl in slim images, so Python does the request). Worker and
# scheduler containers override or disable this (see deploy/docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["fleet"]
CMD ["web", "--bind", "0.0.0.0:8000"]
