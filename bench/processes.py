"""The benchmark's other processes: the API as production serves it, and the load generators."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _summary(module: str, stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed ({returncode}): {stderr.strip()[-1500:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def measure(module: str, spec: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run a load generator in its own process and return its summary."""
    result = subprocess.run([sys.executable, "-m", module], input=json.dumps(spec) + "\n",
                            capture_output=True, text=True, check=False, cwd=ROOT,
                            timeout=timeout)
    return _summary(module, result.stdout, result.stderr, result.returncode)


class Background:
    """A load (bench.attack) running in its own process until stopped; it
    says "ready" once in full swing."""

    def __init__(self, spec: dict[str, Any], ready_within: float = 60) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.attack"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(spec) + "\n")
        stdin.flush()
        readable, _, _ = select.select([stdout], [], [], ready_within)
        line = stdout.readline() if readable else ""
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the {spec['kind']} load did not start: {line.strip()!r}")

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def stop(self) -> dict[str, Any]:
        """Closing its stdin stops it; its summary comes back."""
        try:
            stdout, stderr = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
        return _summary("bench.attack", stdout, stderr, self.process.returncode)


@dataclass(frozen=True)
class Api:
    url: str
    port: int
    pid: int


@contextlib.contextmanager
def api_server(env: dict[str, str], workers: int, log: Path) -> Iterator[Api]:
    """userdir's own server (bench/serve.py: app/server.py's settings, the
    read deadlines, no server header) with `workers` processes; the pid is
    the API process itself when workers == 1."""
    port = free_port()
    env = {**env, "USERDIR_HTTP__HOST": "127.0.0.1", "USERDIR_HTTP__PORT": str(port),
           "USERDIR_HTTP__WORKERS": str(workers)}
    with log.open("ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "bench.serve"], env=env, cwd=ROOT,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"the API did not start:\n{tail}")
            time.sleep(0.2)
        yield Api(url, port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def memory_mb(pid: int, field: str = "VmRSS") -> float | None:
    """VmRSS (now) or VmHWM (peak) of a process, in MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def reset_peak(pid: int) -> bool:
    """Start VmHWM afresh (proc(5): clear_refs, "5"); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def environment(**settings: str) -> dict[str, str]:
    """This process's environment with USERDIR_* settings replaced by these only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERDIR_")}
    return {**env, **settings}


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a process has used so far (proc(5): stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the ")" ending comm: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The share of one CPU each process used between start() and stop(), in %."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float | None] = {}
        self._started = 0.0

    def start(self) -> None:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._started = time.monotonic()

    def stop(self) -> dict[str, int | None]:
        elapsed = time.monotonic() - self._started
        shares: dict[str, int | None] = {}
        for name, pid in self.pids.items():
            before, after = self._start.get(name), cpu_seconds(pid)
            shares[name] = (round(100 * (after - before) / elapsed)
                            if before is not None and after is not None and elapsed else None)
        return shares
