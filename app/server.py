"""How the API is served: uvicorn, with deadlines on reading requests and no server banner."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import sys
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.config import Config

log = logging.getLogger("userdir.http")
# A body may trickle in, but not for longer than this many request timeouts.
BODY_TIMEOUTS = 10
SWITCH_INTERVAL = 0.001  # seconds (sys.setswitchinterval; Python's default is 0.005)


class TimedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the read deadlines it lacks: a
    request's line and headers must arrive within `read_timeout` seconds of
    its first byte (or of the connection, for the first request), and its
    body may pause no longer than that between chunks (nor take longer than
    BODY_TIMEOUTS times it in all). Otherwise the client gets 408 and the
    connection is closed, and a handler waiting for the body sees the client
    leave. uvicorn alone keeps a half-sent request open forever, so a few
    hundred of them hold the server (slowloris)."""

    def __init__(self, *args: Any, read_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False  # between a request's first and last byte
        self._body_deadline = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.read_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = True
        self._arm(self.read_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._body_deadline = time.monotonic() + BODY_TIMEOUTS * self.read_timeout
        self._arm(self.read_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(min(self.read_timeout, self._body_deadline - time.monotonic()))

    def on_message_complete(self) -> None:
        self._reading = False
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(max(seconds, 0.0), self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        current = cycle is not None and cycle.scope is self.scope
        if self._reading and not (current and cycle is not None and cycle.response_started):
            self.transport.write(_request_timeout(self.server_state.default_headers))
        if current and cycle is not None and not cycle.response_complete:
            # The handler waits in receive(): it sees the client leave, and
            # uvicorn drops whatever it sends afterwards.
            cycle.disconnected = True
            cycle.message_event.set()
        log.debug("request from %s not received within %gs: closed", self.client,
                  self.read_timeout)
        self.transport.close()


def _request_timeout(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = b"Request Timeout"
    lines = [STATUS_LINE[408]]
    for name, value in [*default_headers, (b"content-type", b"text/plain; charset=utf-8"),
                        (b"x-content-type-options", b"nosniff"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")]:
        lines.extend([name, b": ", value, b"\r\n"])
    return b"".join([*lines, b"\r\n", body])


def tune_interpreter() -> None:
    """Switch threads every millisecond, not every 5: ldap3 decodes answers in
    Python, and one client's large listing on a worker thread would hold the
    interpreter in 5 ms slices while another's small request waits for it
    (measured: a victim's GET during one user's listing flood went from about
    3.4 to 2.5 times its time alone)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def uvicorn_settings(config: Config) -> dict[str, Any]:
    """uvicorn's settings for this service (the CLI, the tests and the benchmark)."""
    return {
        "host": config.http.host, "port": config.http.port,
        # A partial pickles by reference: worker processes get it too.
        "http": functools.partial(TimedProtocol, read_timeout=config.http.request_timeout),
        "server_header": False,
        # Shutting down waits for requests in progress, but not forever.
        "timeout_graceful_shutdown": 5,
        "log_level": "info", "access_log": False,
    }


def run(config: Config, config_path: str | None) -> None:
    from app.main import create_app

    settings = uvicorn_settings(config)
    tune_interpreter()
    if config.http.workers == 1:
        uvicorn.run(create_app(config), **settings)
        return
    # Worker processes build their own app from the same configuration.
    if config_path:
        os.environ["USERDIR_CONFIG"] = os.path.abspath(config_path)
    # Each worker counts into files there; a scrape of any adds all up (app/metrics.py).
    shared = config.data_dir / "metrics"
    shutil.rmtree(shared, ignore_errors=True)
    shared.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared.resolve())
    uvicorn.run("app.main:app_from_environment", factory=True, workers=config.http.workers,
                **settings)
