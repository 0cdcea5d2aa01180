"""Prometheus metrics of the service (text exposition at /metrics)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter("passnum_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "passnum_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDEMPTIONS = Counter("passnum_redemptions_total", "Redemption attempts by outcome", ["outcome"])
CHEQUES_ISSUED = Counter("passnum_cheques_issued_total", "Cheques issued")


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
