"""Latency lists to the figures the report shows."""

from __future__ import annotations

import statistics
from typing import Any


def summary(latencies_ms: list[float], seconds: float, errors: int) -> dict[str, Any]:
    """Count, rate and quantiles; with no latency at all the quantiles are
    None (the report says "0 requests completed"), never NaN."""
    ordered = sorted(latencies_ms)
    count = len(ordered)

    def quantile(q: float) -> float | None:
        return round(ordered[min(count - 1, int(q * count))], 2) if count else None

    return {
        "requests": count,
        "errors": errors,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1) if seconds else 0.0,
        "p50_ms": round(statistics.median(ordered), 2) if count else None,
        "p99_ms": quantile(0.99),
        "max_ms": round(ordered[-1], 2) if count else None,
    }
