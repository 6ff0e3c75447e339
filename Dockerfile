# syntax=docker/dockerfile:1
# The migration job image: /opt/venv (locked, hash-checked dependencies) + /app (the runner,
# alembic.ini, migrations/, models/). Non-root (10001:10001), runs on a read-only root filesystem.
#
#   docker build -t migrate-job .
#   docker run --rm --read-only --cap-drop ALL --security-opt no-new-privileges \
#       -e DATABASE_URL=postgresql://user:pass@host/db migrate-job            # upgrade head
#
#   docker build --target lint -t migrate-job:lint .                          # + squawk, for `lint`
#
# Stages: build (the venv and /app), squawk (the lint extra), runtime (the migration image), lint
# (runtime + squawk's binary), and last an alias of runtime, so that a build without --target
# gives the migration image, whose size budget squawk's ~25 MB would break (README: Lint).
#
# BASE_IMAGE must provide python3 with the venv module; CI builds from a local Debian bookworm base
# (scripts/image-smoke.sh) because nothing can be pulled there.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# requirements.lock is generated from pyproject.toml by scripts/lock-requirements.sh: every
# dependency pinned with its hashes, installed from wheels only and without resolving anything.
COPY requirements.lock /tmp/requirements.lock
# Third-party code never changes in the image: its pyc files are trusted as they are (no stat of
# the source, no hash), so imports are as fast as they get and nothing is compiled at run time.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --require-hashes --no-deps --only-binary=:all: \
        --no-compile -r /tmp/requirements.lock \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /opt/venv/bin/activate* /opt/venv/bin/Activate.ps1 \
 && find /opt/venv -depth -type d -name __pycache__ -exec rm -rf {} + \
 && python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

COPY entrypoint.py alembic.ini /app/
COPY migrator/ /app/migrator/
COPY models/ /app/models/
COPY migrations/ /app/migrations/
# First the scripts' heads, asked of Alembic now and stored with a digest of the revision files,
# so that a run with nothing to do needs neither Alembic nor SQLAlchemy (migrator/heads.py);
# scripts that Alembic cannot load fail the build here rather than a deploy later. Then bytecode,
# checked against the source's hash, not its mtime: still right when an image built FROM this one
# replaces a migration or a model (a stale pyc would otherwise win), and nothing is written at
# run time.
RUN PYTHONPATH=/app /opt/venv/bin/python -m migrator.heads /app/alembic.ini \
 && python3 -m compileall -q -j 0 --invalidation-mode checked-hash \
        /app/migrator /app/models /app/migrations


# squawk for the lint target only: requirements-lint.lock (scripts/lock-requirements.sh), hashes
# checked, in a venv of its own; the lint target copies the binary alone (it links only libc).
FROM ${BASE_IMAGE} AS squawk
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY requirements-lint.lock /tmp/requirements-lint.lock
RUN python3 -m venv /opt/squawk \
 && /opt/squawk/bin/python -m pip install --require-hashes --no-deps --only-binary=:all: \
        --no-compile -r /tmp/requirements-lint.lock


FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="migrate-job" \
      org.opencontainers.image.description="Database migration job: waits for the database, takes an advisory lock, runs Alembic, logs JSON lines." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"

# A fixed UID/GID that Kubernetes' runAsNonRoot can verify; no home, no login shell. The base
# interpreter's own pip/setuptools/wheel (python:*-slim ships pip) go too: no installer at run time.
RUN useradd --no-log-init --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app \
 && rm -rf /usr/local/bin/pip* /usr/local/lib/python3*/site-packages/pip \
           /usr/local/lib/python3*/site-packages/pip-* \
           /usr/local/lib/python3*/site-packages/setuptools* \
           /usr/local/lib/python3*/site-packages/wheel* /root/.cache

# Root-owned and read-only for the app user.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

# The build arguments behind the labels, for the run history's rows (README: Run history).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MIGRATE_IMAGE_VERSION="${VERSION}" \
    MIGRATE_IMAGE_REVISION="${REVISION}"
WORKDIR /app
USER 10001:10001
# No HEALTHCHECK: a one-shot job has nothing to probe while it runs; its exit code is the verdict.
STOPSIGNAL SIGTERM
# Exec form, no shell in between: the runner is PID 1 and handles SIGTERM itself (exit 143).
ENTRYPOINT ["/opt/venv/bin/python", "/app/entrypoint.py"]
CMD ["upgrade", "head"]


# The runtime image and squawk, where `lint` looks for it (beside the venv's interpreter).
FROM runtime AS lint
COPY --from=squawk /opt/squawk/bin/squawk /opt/venv/bin/squawk
CMD ["lint"]


# Last, so that `docker build .` (no --target) builds the migration image, squawk-free.
FROM runtime
