"""bench/RESULTS.md and bench/results.json from one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.__main__ import Run


def _cell(summary: dict[str, Any] | None, key: str) -> str:
    if not summary or summary.get(key) is None:
        return "-"
    return str(summary[key])


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "-"}[met]


def cross_size(run: Run) -> list[dict[str, Any]]:
    """The targets that compare sizes: p50 growth 1k → largest, and the RSS."""
    checks = []
    sizes = sorted(run.listing_p50)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for name, p50 in (("list by username", run.listing_p50),
                          ("list by username, q", run.listing_q_p50),
                          ("fittrackee list by username", run.fittrackee_p50)):
            ratios = [round(b / a, 2) for a, b in zip(p50[small], p50[large], strict=True)]
            checks.append({"check": f"{name}: p50 at {large} / p50 at {small} "
                                    "(first, middle, last page)",
                           "value": ratios, "target": "≤ 2", "met": max(ratios) <= 2})
    if run.rss:
        largest = max(run.rss)
        checks.append({"check": f"API process RSS after the {largest}-user listing run (MB)",
                       "value": run.rss[largest], "target": "≤ 200",
                       "met": run.rss[largest] <= 200})
    return checks


def write(out: Path, meta: dict[str, Any], run: Run) -> None:
    checks = cross_size(run)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "rows": run.rows, "checks": checks, "rss_mb": run.rss}, indent=2) + "\n")
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}); "
        f"the whole run took {meta['seconds']} s.",
        "",
        "The machine is shared and noisy: the ratio columns compare the API with raw LDAP",
        "(ldap3, same machine, same concurrency) measured in the same run; absolute",
        "figures only give the scale. Latencies in ms; throughput in requests per second.",
        "Raw figures: ldap3 done directly, each worker with its own bound connection.",
        "",
        "| scenario | users | workers | API p50 | API p99 | API /s | raw p50 | raw p99 | raw /s |"
        " ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in run.rows:
        api, raw = row["api"], row["raw"]
        lines.append(
            f"| {row['scenario']} | {row['users']} | {row['workers']} | {_cell(api, 'p50_ms')} "
            f"| {_cell(api, 'p99_ms')} | {_cell(api, 'per_second')} | {_cell(raw, 'p50_ms')} "
            f"| {_cell(raw, 'p99_ms')} | {_cell(raw, 'per_second')} "
            f"| {row['ratio'] if row['ratio'] is not None else '-'} | {row['target']} "
            f"| {_verdict(row['met'])} |")
    lines += ["", "Listing ratios are API p50 / raw p50 (latency); throughput ratios are",
              "API /s ÷ raw /s.", "", "| check | value | target | verdict |", "|---|---|---|---|"]
    for check in checks:
        lines.append(f"| {check['check']} | {check['value']} | {check['target']} "
                     f"| {_verdict(check['met'])} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
