# drawbridge bot image. The WebUI runs elsewhere (see compose.yaml); this image needs no GPU.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, pinned and hash-checked from the lock (asyncpg included): this layer is
# rebuilt only when the lock changes, not on every code change. Refresh it with `make lock`.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
# Then drawbridge itself, without resolving anything again (.dockerignore keeps .env out).
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && useradd --create-home --uid 1000 drawbridge && mkdir -p /data && chown drawbridge /data
USER drawbridge
# Everything drawbridge writes goes under the /data volume: the SQLite database
# (DATA_DIR/drawbridge.db unless DATABASE_URL says otherwise) and the stored images.
ENV DATA_DIR=/data
VOLUME ["/data"]
# /healthz, /readyz and /metrics (HTTP_LISTEN=off turns them off: then make the healthcheck
# `drawbridge db check`, which connects to the database once)
ENV HTTP_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=10)"]
ENTRYPOINT ["drawbridge"]
CMD ["run"]
