"""What every dialect's error answer shares, whatever its body: waiting hints and logging."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import InternalServerException

from app.domain import Busy, Throttled, Unavailable

CLIENT_CLOSED = 499  # nginx's name for it; never seen by the client


def answer(request: Request[Any, Any, Any], error: Exception, status: int, body: Any, *,
           log: logging.Logger, headers: dict[str, str] | None = None) -> Response[Any]:
    """The dialect's status and body, with `Retry-After` on a 429 or 503, and
    a 500 logged once with its traceback; a client that left mid-request is
    no server error and is logged at info, once."""
    if client_left(error):
        # Nobody is there to read an answer; a client that hangs up is no
        # server error (uvicorn drops what is sent after it left).
        log.info("client left during %s %s", request.method, request.url.path)
        return Response(None, status_code=CLIENT_CLOSED)
    headers = dict(headers or {})
    if isinstance(error, Throttled):
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, Busy | Unavailable) or status == 503:
        headers["Retry-After"] = str(getattr(error, "retry_after", 1))
    if status == 500:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return Response(body, status_code=status, headers=headers)


def client_left(error: Exception) -> bool:
    """Did the client go away before its request was read whole? (Litestar
    raises this when receive() says http.disconnect: the client hung up, or
    app/server.py gave up waiting for the rest of the body.)"""
    return isinstance(error, InternalServerException) and \
        error.detail == "client disconnected prematurely"
