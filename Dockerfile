# Production-like image of the Pass numérique service.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md package.json package-lock.json ./
COPY api api
COPY pass_ pass_
COPY clearing clearing
COPY ledger ledger
COPY kit kit
COPY migrations migrations
RUN pip install --no-cache-dir . && npm ci --no-audit --no-fund --omit=dev
ENV PASSNUM_DATA_DIR=/data PORT=8000 PASSNUM_HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD ["passnum", "serve", "--workers", "2"]
