"""Prometheus metrics: what the service counts, and their text exposition, across worker processes.

With several worker processes (http.workers > 1) each writes its values to
files in PROMETHEUS_MULTIPROC_DIR (set by app/server.py before the workers
start), and a scrape of any one of them adds up all (prometheus-client's
multiprocess mode). Labels are bounded: route templates, never raw paths.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("userdir_requests", "HTTP requests answered",
                   ["dialect", "route", "method", "status"])
LATENCY = Histogram("userdir_request_duration_seconds", "Time to answer an HTTP request",
                    ["dialect", "route", "method"],
                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
LOGINS = Counter("userdir_logins", "Login attempts, by outcome "
                 "(success, failure, throttled, invalid)", ["outcome"])
POOL_QUEUED = Gauge("userdir_pool_queued", "Calls waiting for a worker, per pool", ["pool"],
                    multiprocess_mode="livesum")
POOL_RUNNING = Gauge("userdir_pool_running", "Calls running on a worker, per pool", ["pool"],
                     multiprocess_mode="livesum")
POOL_REFUSED = Counter("userdir_pool_refused", "Calls refused at once, per pool and reason "
                       "(overloaded: queue full, share: one client over its share)",
                       ["pool", "reason"])
BREAKER_TRIPS = Counter("userdir_ldap_breaker_trips",
                        "Times slapd was found unreachable and requests failed at once "
                        "for a moment (the circuit breaker opened)")
REPLICA_LAG = Gauge("userdir_replica_lag_seconds",
                    "How long each read replica (ldap.read_urls) has lacked a change the "
                    "provider holds, as last seen (0: it lacks none)", ["replica"],
                    multiprocess_mode="livemax")
REPLICA_UP = Gauge("userdir_replica_up", "Whether each read replica answered when last watched "
                   "(1) or not (0)", ["replica"], multiprocess_mode="livemin")
MAIL = Counter("userdir_mail", "Mail handed to the mail backend, by outcome (sent, failed)",
               ["outcome"])


class PoolObserver:
    """What a bulkhead reports (app/bulkhead.py knows nothing of Prometheus)."""

    def changed(self, pool: str, queued: int, running: int) -> None:
        POOL_QUEUED.labels(pool).set(queued)
        POOL_RUNNING.labels(pool).set(running)

    def refused(self, pool: str, reason: str) -> None:
        POOL_REFUSED.labels(pool, reason).inc()


def breaker_tripped() -> None:
    BREAKER_TRIPS.inc()


def replica_seen(url: str, lag: float | None) -> None:
    """A consumer's watcher has read it (lag None: it did not answer)."""
    REPLICA_UP.labels(url).set(0 if lag is None else 1)
    if lag is not None:
        REPLICA_LAG.labels(url).set(lag)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
