"""A small HTTP/1.1 keep-alive client on asyncio streams, from a chosen source address.

The service keys its throttle and its bulkheads' fairness on the client's
address, so playing many clients takes many loopback addresses (127.0.0.0/8
is all loopback on Linux); wrk cannot bind one. httpx could, but an abuse
load generator must spend far less CPU than the server it loads, on a
machine of two cores: this client parses only the status, the headers it is
asked for and the body's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

Headers = dict[str, str]


class NoAnswer(Exception):
    """The request got no (complete) answer: refused, reset, closed or timed out."""


class _Stale(Exception):
    """A kept-alive connection was closed by the server before this request."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One connection at a time, reopened when the server closes it."""

    def __init__(self, host: str, port: int, source: str | None = None,
                 timeout: float = 30.0) -> None:
        self.host, self.port, self.source, self.timeout = host, port, source, timeout
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, headers: Headers | None = None,
                      body: bytes = b"") -> Answer:
        """One request and its answer; NoAnswer if none comes. A kept-alive
        connection the server closed meanwhile (uvicorn closes idle ones
        after 5 s) is replaced once, as browsers do: it never saw the request."""
        for _ in range(2):
            try:
                return await asyncio.wait_for(
                    self._exchange(method, path, headers or {}, body), self.timeout)
            except _Stale:
                self.close()
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                self.close()
                raise NoAnswer(str(e) or type(e).__name__) from e
        raise NoAnswer("closed by the server")

    async def _exchange(self, method: str, path: str, headers: Headers, body: bytes) -> Answer:
        reused = self._streams is not None
        if self._streams is None:
            local = (self.source, 0) if self.source else None
            self._streams = await asyncio.open_connection(self.host, self.port,
                                                          local_addr=local)
        reader, writer = self._streams
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            status_line = await reader.readline()
        except ConnectionError:
            if reused:
                raise _Stale() from None
            raise
        if not status_line:
            if reused:
                raise _Stale()
            raise ConnectionResetError("closed by the server")
        status = int(status_line.split()[1])
        received: Headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            received[name.strip().lower()] = value.strip()
        if received.get("transfer-encoding", "").lower() == "chunked":
            content = await _chunks(reader)
        else:
            content = await reader.readexactly(int(received.get("content-length", "0")))
        if received.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, received, content)

    def close(self) -> None:
        if self._streams is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._streams[1].close()
            self._streams = None


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readline()).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # trailers
    return b"".join(parts)
