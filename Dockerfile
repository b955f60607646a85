# TrayLens images (docs/DEPLOY.md). Stages:
#   base   python slim, the non-root user `traylens` (uid 10001), quiet pip and Python
#   build  a virtual environment with the serving install only: `pip install .` (no torch)
#   train  the training stack (`pip install '.[train]'`: torch, torchvision, ONNX export)
#   serve  the default target: the build stage's environment (ONNX Runtime, the web stack,
#          the shipped model in model/artifacts, the nutrient table), non-root, HEALTHCHECK,
#          migrations before the service starts
#
#   docker build -t traylens .                        # serve (the last stage)
#   docker run -p 8000:8000 -v traylens-data:/data traylens
#   docker run --rm traylens python -m serve keys create --role admin   # the first admin key
#   docker build --target train -t traylens-train .   # torchrun -m model.train (docs/DEPLOY.md)
# Settings are TRAYLENS_* environment variables (docs/API.md); PostgreSQL by TRAYLENS_DATABASE_URL.
# tests/test_container.py lints this file with hadolint and repeats the build stage's
# install in a fresh virtual environment.

FROM python:3.11-slim-bookworm AS base
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 traylens \
 && useradd --system --uid 10001 --gid traylens --home-dir /home/traylens --create-home traylens

FROM base AS build
RUN python -m venv /opt/traylens
ENV PATH=/opt/traylens/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nutrition_db ./nutrition_db
COPY model ./model
COPY serve ./serve
# A plain (non-editable) install of the serving dependencies only: [project].dependencies.
RUN pip install . \
 && python -c "import sys, serve.main; assert 'torch' not in sys.modules, 'torch leaked into serve'"

FROM base AS train
RUN python -m venv /opt/traylens
ENV PATH=/opt/traylens/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nutrition_db ./nutrition_db
COPY model ./model
COPY serve ./serve
# The configs name their data relative to the repository (../shared/data): mount it there.
# Checkpoints and the feature cache go to /src/var (mount a volume for them).
# The local project, not a registry name: its pins (torch, torchvision) are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install '.[train]' \
 && mkdir -p /src/var /shared && chown traylens:traylens /src/var /shared
USER 10001:10001
CMD ["torchrun", "--standalone", "--nproc_per_node=gpu", "-m", "model.train", \
     "--config", "model/configs/default.yaml"]

FROM base AS serve
# Hangul glyphs for Korean dish names on overlay images (serve/core/overlay.py). Debian's
# current package, unpinned: the security mirror replaces exact versions.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends fonts-nanum \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/traylens /opt/traylens
ENV PATH=/opt/traylens/bin:$PATH \
    TRAYLENS_DATA_DIR=/data
# Photos, uploaded models and the default SQLite database live here.
RUN mkdir -p /data && chown traylens:traylens /data
VOLUME ["/data"]
# Run from an empty directory so `python -m serve` imports the installed package.
WORKDIR /home/traylens
# The numeric user `traylens`, so that Kubernetes' runAsNonRoot can check it (deploy/k8s).
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Migrations first (one process at a time: an advisory lock on PostgreSQL), then the service
# as PID 1 (exec), so that `docker stop` reaches uvicorn. Kubernetes runs the two as a Job
# and a Deployment instead (deploy/k8s).
CMD ["sh", "-c", "python -m serve migrate && exec python -m serve --host 0.0.0.0 --port 8000"]
