"""What one benchmark run collects; a scenario that fails is recorded, and the run goes on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def non_2xx(summary: dict[str, Any] | None) -> str:
    """The answers outside 2xx, by status ("0" when there were none), and the
    requests that got no answer at all."""
    if not summary:
        return "-"
    statuses: dict[str, int] = summary.get("statuses") or {}
    parts = [f"{code}: {n}" for code, n in sorted(statuses.items()) if not code.startswith("2")]
    if summary.get("no_answer"):
        parts.append(f"no answer: {summary['no_answer']}")
    unknown = (summary.get("errors") or 0) - (summary.get("no_answer") or 0)
    if not statuses and unknown > 0:  # a wrk without the status counts
        parts.append(f"non-2xx: {unknown}")
    return ", ".join(parts) or "0"


def served_per_second(summary: dict[str, Any]) -> float | None:
    """Requests answered with the expected status, per second: a quick 503
    is no throughput."""
    seconds = summary.get("seconds")
    if not seconds:
        return None
    unexpected = (summary.get("errors") or 0) - (summary.get("no_answer") or 0)
    served: int = max(0, summary["requests"] - unexpected)
    return served / float(seconds)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


class Run:
    def __init__(self, duration: float, abuse_window: float, owner_limit: float) -> None:
        self.duration = duration
        self.abuse_window = abuse_window
        self.owner_limit = owner_limit
        self.rows: list[dict[str, Any]] = []
        self.listing_p50: dict[int, list[float | None]] = {}
        self.listing_q_p50: dict[int, list[float | None]] = {}
        self.fittrackee_p50: dict[int, list[float | None]] = {}
        self.rss: dict[int, float | None] = {}
        # Per size: seconds to seed, the database's size on disk, slapd's memory.
        self.directory: dict[int, dict[str, float | None]] = {}
        self.abuse: list[dict[str, Any]] = []
        self.guessing: dict[str, Any] | None = None
        self.memory: dict[str, float | bool | None] = {}
        self.profile: dict[str, Any] | None = None  # bench/profile.py's, of GET one user
        # bench/audit.py's metrics on ÷ off, burst by burst: {"burst_s", "ratios"}.
        self.metrics_pairs: dict[str, Any] | None = None

    def row(self, scenario: str, size: int, workers: int, api: dict[str, Any] | None,
            raw: dict[str, Any] | None, target: str, met: bool | None,
            ratio: float | None = None, failed: str | None = None) -> None:
        self.rows.append({"scenario": scenario, "users": size, "workers": workers,
                          "api": api, "raw": raw, "ratio": ratio, "target": target,
                          "met": met, "failed": failed})
        verdict = {True: "ok", False: "MISSED", None: ""}[met]
        if failed:
            print(f"  {scenario} [{size} users, {workers}w]: FAILED {failed}", flush=True)
            return
        api = api or {}
        shown = f"ratio {ratio}" if ratio is not None else ""
        print(f"  {scenario} [{size} users, {workers}w]: {api.get('requests')} requests, "
              f"non-2xx {non_2xx(api)}, p50 {api.get('p50_ms')} ms, "
              f"{api.get('per_second')}/s {shown} {verdict}", flush=True)

    @contextlib.contextmanager
    def scenario(self, name: str, size: int, workers: int = 1) -> Iterator[None]:
        """Whatever goes wrong in the block becomes this scenario's row."""
        try:
            yield
        except Exception as e:  # the report must be written whatever one scenario does
            message = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
            self.row(name, size, workers, None, None, "-", False, failed=message)
