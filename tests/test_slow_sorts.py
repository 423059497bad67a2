"""A sorted listing may take longer than other answers (listing.sort_timeout).

At a million people slapd takes about 4 s to sort before its first window
(bench at 1M users), the ordinary operation timeout: the first page of each
new order answered 503. A slapd held still (SIGSTOP) plays the slow sort here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.directory.pool import Endpoint
from app.domain import Unavailable, UserQuery
from app.runtime import Runtime
from tests.conftest import SlapdInstance, create, make_config, run


@pytest.fixture
def held(private_slapd: SlapdInstance) -> Iterator[threading.Event]:
    """Set it to hold slapd still for 2.5 s, then let it go."""
    pid = private_slapd.process.process.pid
    go = threading.Event()

    def hold() -> None:
        if go.wait(30):
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(2.5)
            finally:
                os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        yield go
    finally:
        go.set()
        thread.join()


def listing_runtime(slapd: SlapdInstance, folder: Path, sort_timeout: float) -> Runtime:
    return Runtime.build(make_config(slapd, folder, ldap={"operation_timeout": 1.0},
                                     listing={"sort_timeout": sort_timeout, "context_ttl": 0}))


@pytest.mark.parametrize("sort_timeout", [6.0, 1.0])
def test_a_slow_sort_is_waited_for_up_to_its_own_timeout(
        private_slapd: SlapdInstance, tmp_path: Path, held: threading.Event,
        monkeypatch: pytest.MonkeyPatch, sort_timeout: float) -> None:
    """The listing's connection is made and bound as any other (operation
    timeout: 1 s); then slapd is held still while it sorts."""
    runtime = listing_runtime(private_slapd, tmp_path, sort_timeout)
    connect = Endpoint.connect

    def bound_then_held(self: Endpoint, *args: Any, **kwargs: Any) -> Any:
        conn = connect(self, *args, **kwargs)
        held.set()
        time.sleep(0.3)  # slapd is still
        return conn

    try:
        for _ in range(3):
            create(runtime)
        monkeypatch.setattr(Endpoint, "connect", bound_then_held)
        started = time.monotonic()
        if sort_timeout > 2.5:
            page = run(runtime.service.list_users(UserQuery(limit=2)))
            assert len(page.users) == 2 and page.total >= 3
        else:
            with pytest.raises(Unavailable):
                run(runtime.service.list_users(UserQuery(limit=2)))
        assert time.monotonic() - started < sort_timeout + 2
    finally:
        monkeypatch.undo()
        runtime.close()


def test_later_windows_and_other_answers_keep_the_operation_timeout(
        private_slapd: SlapdInstance, tmp_path: Path) -> None:
    runtime = listing_runtime(private_slapd, tmp_path, 6.0)
    try:
        run(runtime.service.list_users(UserQuery(limit=2)))
        slot = next(s for s in runtime.directory.listing._slots if s.conn is not None)
        assert slot.conn.socket.gettimeout() == slot.conn.receive_timeout == 1
    finally:
        runtime.close()
