# wedgenet service image: the same code path as the embedded default, configured by env.
FROM python:3.11-slim

# NUMBA_CACHE_DIR: numba's cache of compiled kernels, in a folder the runtime user can write
# (site-packages is root's, and ~/.cache would start empty in every container).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/var/cache/wedgenet/numba
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 wedgenet \
    && mkdir -p "$NUMBA_CACHE_DIR" && chown -R wedgenet "$NUMBA_CACHE_DIR"
WORKDIR /srv/wedgenet

COPY pyproject.toml README.md* ./
COPY wedgenet ./wedgenet
COPY app ./app
COPY worker ./worker
RUN pip install ".[service]"

USER wedgenet
# Compile the numerical kernels now (about 30 s) so that a fresh container's first solve
# loads them from the cache instead (see wedgenet/warmup.py). numba keys its cache by the
# source file's path: processes started here import the copy under /srv/wedgenet (the worker:
# celery puts the working directory first), others the installed copy, so both are warmed.
# The cache also records the build machine's CPU model: on another model the worker compiles
# again at its start (before taking jobs); build with `ENV NUMBA_CPU_NAME=generic` here for
# an image whose cache fits every x86-64 CPU (portable code, slower pricing).
RUN python -m wedgenet.warmup && cd / && python -m wedgenet.warmup
EXPOSE 8000
# API by default; the worker service overrides the command (see docker-compose.yml)
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
