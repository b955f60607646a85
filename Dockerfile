# TrayLens serving image: ONNX Runtime + numpy + Pillow + the web stack, no torch.
#   docker build -t traylens .
#   docker run -p 8000:8000 -v traylens-data:/data -e TRAYLENS_BOOTSTRAP_ADMIN_KEY=... traylens
# Settings are TRAYLENS_* environment variables (docs/API.md); PostgreSQL by TRAYLENS_DATABASE_URL.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
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

FROM python:3.11-slim
ENV PATH=/opt/traylens/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRAYLENS_DATA_DIR=/data
COPY --from=build /opt/traylens /opt/traylens
# Hangul glyphs for Korean dish names on overlay images (serve/core/overlay.py).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-nanum \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 traylens \
 && useradd --system --uid 10001 --gid traylens --home-dir /home/traylens --create-home traylens \
 && mkdir -p /data && chown traylens:traylens /data
# Photos, uploaded models and the default SQLite database live here.
VOLUME ["/data"]
# Run from an empty directory so `python -m serve` imports the installed package.
WORKDIR /home/traylens
USER traylens
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "serve", "--host", "0.0.0.0", "--port", "8000"]
