# wedgenet service image: the same code path as the embedded default, configured by env.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 wedgenet
WORKDIR /srv/wedgenet

COPY pyproject.toml README.md* ./
COPY wedgenet ./wedgenet
COPY app ./app
COPY worker ./worker
RUN pip install ".[service]"

USER wedgenet
EXPOSE 8000
# API by default; the worker service overrides the command (see docker-compose.yml)
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
