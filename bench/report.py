"""bench/RESULTS.md and bench/results.json from one run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.run import Run, non_2xx

PEAK_TARGET_MB = 512


def _cell(summary: dict[str, Any] | None, key: str) -> str:
    if not summary or summary.get(key) is None:
        return "-"
    return str(summary[key])


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "-"}[met]


def _p50(summary: dict[str, Any] | None) -> str:
    """The p50, or what stands in its place: a scenario that completed nothing says so."""
    if summary is not None and summary.get("requests") == 0:
        return "0 requests completed"
    return _cell(summary, "p50_ms")


def cross_size(run: Run) -> list[dict[str, Any]]:
    """The targets that compare sizes (p50 growth 1k → largest), and memory."""
    checks: list[dict[str, Any]] = []
    sizes = sorted(run.listing_p50)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for name, p50 in (("list by username", run.listing_p50),
                          ("list by username, q", run.listing_q_p50),
                          ("fittrackee list by username", run.fittrackee_p50)):
            pairs = zip(p50.get(small, []), p50.get(large, []), strict=False)
            ratios = [round(b / a, 2) if a and b is not None else None for a, b in pairs]
            if not ratios:
                continue
            known = [r for r in ratios if r is not None]
            checks.append({"check": f"{name}: p50 at {large} / p50 at {small} "
                                    "(first, middle, last page)",
                           "value": ratios, "target": "≤ 2",
                           "met": bool(known) and len(known) == len(ratios) and max(known) <= 2})
    if run.rss:
        largest = max(run.rss)
        rss = run.rss[largest]
        checks.append({"check": f"API process RSS after the {largest}-user listing run (MB)",
                       "value": rss, "target": "≤ 200", "met": rss is not None and rss <= 200})
    peak = run.memory.get("peak_mb")
    if peak is not None:
        since = "during" if run.memory.get("peak_reset") else "since start-up, up to the end of"
        checks.append({"check": f"API process peak RSS (VmHWM) {since} 4 parallel maximal "
                                "WebP uploads (MB)",
                       "value": peak, "target": f"≤ {PEAK_TARGET_MB}",
                       "met": isinstance(peak, float) and peak <= PEAK_TARGET_MB})
        checks.append({"check": "API process RSS 3 s after those uploads (MB)",
                       "value": run.memory.get("after_3s_mb"), "target": "-", "met": None})
    return checks


def _main_table(run: Run) -> list[str]:
    lines = [
        "| scenario | users | workers | requests | non-2xx | API p50 | API p99 | API /s "
        "| raw p50 | raw p99 | raw /s | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in run.rows:
        api, raw = row["api"], row["raw"]
        if row.get("failed"):
            lines.append(f"| {row['scenario']} | {row['users']} | {row['workers']} | - | - "
                         f"| failed: {row['failed']} | | | | | | | - | **MISSED** |")
            continue
        lines.append(
            f"| {row['scenario']} | {row['users']} | {row['workers']} | {_cell(api, 'requests')} "
            f"| {non_2xx(api)} | {_p50(api)} | {_cell(api, 'p99_ms')} "
            f"| {_cell(api, 'per_second')} | {_p50(raw)} | {_cell(raw, 'p99_ms')} "
            f"| {_cell(raw, 'per_second')} "
            f"| {row['ratio'] if row['ratio'] is not None else '-'} | {row['target']} "
            f"| {_verdict(row['met'])} |")
    return lines


def _cpu(shares: dict[str, int | None] | None) -> str:
    if not shares:
        return "-"
    return ", ".join("-" if v is None else str(v) for v in shares.values())


def _abuse_table(run: Run) -> list[str]:
    lines = [
        "| attack | users | victim alone p50 / p99 | during p50 / p99 | ratio p50 | ratio p99 "
        "| victim requests, non-2xx | attack requests (/s), answers other than 2xx "
        "| CPU (% of a core) API, slapd: alone → during | target | verdict | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in run.abuse:
        alone, during, load = row["alone"], row["during"], row["load"]
        held = ""
        if "held" in load:
            held = (f"; held {load['held']}: {load['opened']} opened, "
                    f"{load['dropped_by_server']} dropped by the server")
        lines.append(
            f"| {row['attack']} | {row['users']} "
            f"| {_p50(alone)} / {_cell(alone, 'p99_ms')} "
            f"| {_p50(during)} / {_cell(during, 'p99_ms')} "
            f"| {row['ratio_p50'] if row['ratio_p50'] is not None else '-'} "
            f"| {row['ratio_p99'] if row['ratio_p99'] is not None else '-'} "
            f"| {_cell(during, 'requests')}, {non_2xx(during)} "
            f"| {load.get('requests', 0)} ({load.get('per_second', '-')}/s), "
            f"{non_2xx(load)}{held} | {_cpu(row.get('cpu_alone'))} → {_cpu(row.get('cpu_during'))} "
            f"| p50 ≤ 3 x alone | {_verdict(row['met'])} "
            f"| {row['notes'] or '-'} |")
    return lines


def _guessing(run: Run) -> list[str]:
    result = run.guessing
    if result is None:
        return []
    after = result["owner_succeeded_after_s"]
    within = after is not None and after <= 60
    attempts = ", ".join(
        f"{a['at_s']} s: {a['status']}" + (f" (Retry-After {a['retry_after_s']})"
                                           if a.get("retry_after_s") else "")
        for a in result["owner_attempts"])
    last = result["owner_attempts"][-1] if result["owner_attempts"] else {}
    if after is not None:
        outcome = f"got in after **{after} s**"
    elif last.get("retry_after_s"):
        outcome = (f"did **not** get in: at {last['at_s']} s he was told to wait "
                   f"{last['retry_after_s']} s more (this run waits {result['owner_limit_s']} s "
                   "at most)")
    else:
        outcome = f"did **not** get in within {result['owner_limit_s']} s"
    guesses = result["guesses"]
    return [
        "",
        f"The owner's login under a distributed guessing attack ({result['users']} users): "
        f"{result['guessers']} addresses send wrong passwords for his account as fast as they "
        f"are answered; {result['owner_start_s']} s into the attack the owner, from his own "
        f"address, logs in with his password, and again every {result['owner_interval_s']} s "
        "(or after Retry-After, if longer) until he gets in. He "
        f"{outcome} (target: within 60 s, {_verdict(within)}). His attempts (time since his "
        f"first: status): {attempts}. The guessers got {guesses['requests']} answers "
        f"({non_2xx(guesses)}).",
    ]


def _busy(meta: dict[str, Any]) -> list[str]:
    """A warning when other work held more CPUs than the machine has."""
    cpus = os.cpu_count() or 1
    if max(meta["load"]) <= cpus:
        return []
    return ["",
            f"**A busy run:** the load average passed the number of CPUs ({cpus}); the API,",
            "slapd and the load generators got a fraction of the machine, so the figures in",
            "ms (and the targets stated in ms) say little here; the ratios, measured side by",
            "side, still compare like with like, with more noise."]


def write(out: Path, meta: dict[str, Any], run: Run) -> None:
    checks = cross_size(run)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"meta": meta, "rows": run.rows, "checks": checks, "rss_mb": run.rss,
         "directory": run.directory,
         "abuse": run.abuse, "guessing": run.guessing, "memory": run.memory,
         "metrics_pairs": run.metrics_pairs},
        indent=2) + "\n")
    load = " and ".join(f"{x:.1f}" for x in meta["load"])
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}); "
        f"the whole run took {meta['seconds']} s; load average (1 min) at its start and end: "
        f"{load}.",
        "",
        "The machine is shared and noisy: the ratio columns compare the API with raw LDAP",
        "(ldap3, same machine, same concurrency) measured in the same run; absolute",
        "figures only give the scale. Latencies in ms; throughput in requests per second.",
        "Raw figures: ldap3 done directly, each worker with its own bound connection.",
        "The API is served by userdir's own server settings (`python -m bench.serve`:",
        "app/server.py, as `userdir serve`), with the default configuration: the load of",
        "these scenarios comes from one address at a concurrency of at most 8, within one",
        "client's share (`ldap.client_limit`, 16 waiting calls); `non-2xx` counts every",
        "other answer.",
        *_busy(meta),
        "",
        *_main_table(run),
        "",
        "Listing ratios are API p50 / raw p50 (latency); throughput ratios are",
        "API /s ÷ raw /s, counting only the answers with the expected status.",
    ]
    if any(row["scenario"].startswith("replicas:") for row in run.rows):
        lines += [
            "The `replicas:` rows have no raw side: their ratio is the API's rate reading",
            "from consumers ÷ its rate reading from the provider only (same run, same",
            "load); in the lag row, requests are samples and p50/p99 the time until a",
            "consumer holds the provider's newest change while the API creates users.",
            "Provider, consumers, API and load share this machine's cores.",
        ]
    if run.metrics_pairs:
        pairs = run.metrics_pairs
        shown = ", ".join(f"{r:.2f}" for r in pairs["ratios"])
        lines += [
            "The metrics row's ratio is the median of on ÷ off over rounds of",
            f"{pairs['burst_s']:g} s in which two APIs on one slapd, metrics on and off, were",
            "loaded at the same time (bench/audit.py): what else the machine did slowed",
            f"both alike. The {len(pairs['ratios'])} rounds' ratios: {shown}.",
        ]
    if run.abuse or run.guessing:
        lines += [
            "",
            "## Availability under abuse",
            "",
            "A signed-in user reads himself (`GET /people/{him}`, one request after another,",
            f"from his own address) for {run.abuse_window:g} s alone, then for as long again",
            "while an attack runs from another process (own loopback addresses, 127.0.x.y).",
            "Only 200s are timed; the ratio is during ÷ alone, both measured in this run.",
            "",
            *_abuse_table(run),
            "",
            *(f"- {row['attack']}: {row['how']}." for row in run.abuse),
            *_guessing(run),
        ]
    if run.directory:
        lines += ["", "| users | seeded in (s, slapadd) | data.mdb on disk (MB) "
                  "| slapd RSS after the listings (MB) |", "|---|---|---|---|"]
        lines += [f"| {size} | {_cell(d, 'seed_s')} | {_cell(d, 'db_mb')} "
                  f"| {_cell(d, 'slapd_rss_mb')} |" for size, d in sorted(run.directory.items())]
    lines += ["", "| check | value | target | verdict |", "|---|---|---|---|"]
    for check in checks:
        lines.append(f"| {check['check']} | {check['value']} | {check['target']} "
                     f"| {_verdict(check['met'])} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
