# wedgenet service image: the same code path as the embedded default, configured by env.
# Dependencies are pinned by constraints.txt (the versions CI tests; .ci/constraints.py writes
# it) and installed in their own layer before the source is copied, so code edits rebuild only
# the last layers. Runs as an unprivileged user (uid/gid 10001).
FROM python:3.11-slim

# NUMBA_CACHE_DIR: numba's cache of compiled kernels, in a folder the runtime user can write
# (site-packages is root's, and ~/.cache would start empty in every container).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 NUMBA_CACHE_DIR=/var/cache/wedgenet/numba
WORKDIR /srv/wedgenet

# 1. Dependencies (the engine, the service and the ONNX export), read from pyproject.toml and
#    pinned by constraints.txt: this layer changes only when one of those two files does.
COPY pyproject.toml constraints.txt ./
RUN groupadd --gid 10001 wedgenet \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin wedgenet \
    && mkdir -p "$NUMBA_CACHE_DIR" && chown -R 10001:10001 "$NUMBA_CACHE_DIR" \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; o = p['optional-dependencies']; print('\n'.join(p['dependencies'] + o['service'] + o['export']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The code (no dependency is resolved again: --no-deps).
COPY README.md ./
COPY wedgenet ./wedgenet
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps -c constraints.txt .

USER 10001:10001
# Compile the numerical kernels now (about 30 s) so that a fresh container's first solve
# loads them from the cache instead (see wedgenet/warmup.py). numba keys its cache by the
# source file's path: processes started here import the copy under /srv/wedgenet (the worker:
# celery puts the working directory first), others the installed copy (python -P leaves the
# working directory off sys.path), so both are warmed. The cache also records the build
# machine's CPU model: on another model the worker compiles again at its start (before taking
# jobs); build with `ENV NUMBA_CPU_NAME=generic` here for an image whose cache fits every
# x86-64 CPU (portable code, slower pricing).
RUN python -m wedgenet.warmup && python -P -m wedgenet.warmup
EXPOSE 8000
# API by default; the worker service overrides the command (see docker-compose.yml, which
# also defines both healthchecks: the image has no curl, the API's check uses python)
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
