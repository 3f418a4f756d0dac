# drawbridge bot image. The WebUI runs elsewhere (see compose.yaml); this image needs no GPU.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
COPY devwebui ./devwebui
RUN pip install --no-cache-dir . && useradd --create-home drawbridge && mkdir -p /data \
    && chown drawbridge /data
USER drawbridge
ENV DATABASE_URL=sqlite+aiosqlite:////data/drawbridge.db DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["drawbridge"]
CMD ["run"]
