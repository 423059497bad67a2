"""Metrics at /metrics, one log line per request (text or JSON), request ids: what operators see."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import logs
from app.config import Config, LogConfig
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, SlapdInstance, create, make_config
from tests.conftest import native_login as login

Client = TestClient[Any]
SCRAPER = "scraper-token-0123456789"
ROUTE = "/people/{username}"


@pytest.fixture(scope="module")
def client(slapd: SlapdInstance, tmp_path_factory: pytest.TempPathFactory,
           bootstrapped: None) -> Iterator[Client]:
    config = make_config(slapd, tmp_path_factory.mktemp("metrics"), metrics={"token": SCRAPER})
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics (as the scraper), by name and labels."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def requests_to(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], route: str,
                status: str) -> float:
    return sum(v for (name, labels), v in samples.items()
               if name == "userdir_requests_total" and ("route", route) in labels
               and ("status", status) in labels)


def test_metrics_parse_and_their_counters_move_with_requests(
        client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    user = create(runtime)
    before = scrape(client)
    for _ in range(3):
        assert client.get(f"/people/{user.username}", headers=admin).status_code == 200
    assert client.get("/people/nobody-at-all", headers=admin).status_code == 404
    assert client.post("/auth/token", json={"username": user.username,
                                            "password": "wrong-one!"}).status_code == 401
    after = scrape(client)
    assert requests_to(after, ROUTE, "200") - requests_to(before, ROUTE, "200") == 3
    assert requests_to(after, ROUTE, "404") - requests_to(before, ROUTE, "404") == 1
    failures = ("userdir_logins_total", (("outcome", "failure"),))
    assert after[failures] - before.get(failures, 0) == 1
    histogram = ("userdir_request_duration_seconds_count",
                 (("dialect", "native"), ("method", "GET"), ("route", ROUTE)))
    assert after[histogram] - before.get(histogram, 0) == 4
    assert any(name == "userdir_pool_running" for name, _ in after)
    # labels are route templates, never a path with someone's name in it
    assert not any(user.username in value for _, labels in after for _, value in labels)


def test_metrics_are_for_admins_and_the_scraper_only(client: Client, admin: dict[str, str],
                                                    runtime: Runtime) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    user = login(client, create(runtime).username)
    assert client.get("/metrics", headers=user).status_code == 403
    assert client.get("/metrics", headers=admin).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"}) \
        .status_code == 200


def test_switched_off_metrics_are_neither_served_nor_counted(
        slapd: SlapdInstance, tmp_path: Path, client: Client, bootstrapped: None) -> None:
    config = make_config(slapd, tmp_path, metrics={"enabled": "false"})
    before = requests_to(scrape(client), "/health", "200")
    with TestClient(app=create_app(config)) as off:
        assert off.get("/health").status_code == 200
        headers = login(off, ADMIN, ADMIN_PASSWORD)
        assert off.get("/metrics", headers=headers).status_code == 404
    assert requests_to(scrape(client), "/health", "200") == before


@contextlib.contextmanager
def configured_logs(settings: LogConfig) -> Iterator[io.StringIO]:
    """app/logs.py's configuration, writing to a buffer; the test run's own
    handlers (conftest's leak check among them) come back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        logs.configure(settings)
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_json_logs_are_one_object_a_line_with_the_request_id(config: Config,
                                                             bootstrapped: None) -> None:
    with configured_logs(LogConfig(format="json")) as buffer, \
            TestClient(app=create_app(config)) as json_client:
        answer = json_client.get("/health", headers={"X-Request-ID": "trace-7"})
        json_client.post("/auth/token", json={"username": ADMIN, "password": "wrong-one!"})
    assert answer.headers["x-request-id"] == "trace-7"
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "userdir.access"]
    assert [(a["request_id"], a["status"], a["route"]) for a in access][:1] == \
        [("trace-7", 200, "/health")]
    assert all({"time", "level", "message"} <= line.keys() for line in lines)
    assert len(access) == 2 and "wrong-one!" not in buffer.getvalue()


def test_request_ids_are_echoed_when_sane_and_made_otherwise(client: Client) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-1.2:3_4"}) \
        .headers["x-request-id"] == "abc-1.2:3_4"
    for insane in ("with space", "x" * 129, "<script>"):
        made = client.get("/health", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert made != insane and len(made) == 32
    first, second = (client.get("/health").headers["x-request-id"] for _ in range(2))
    assert first != second


def test_configuring_logs_keeps_other_handlers() -> None:
    """logs.configure replaces its own handler only: it removed every root
    handler once, conftest's leak check among them, after any cli.main."""
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        with configured_logs(LogConfig()), configured_logs(LogConfig(format="json")):
            ours = [h for h in root.handlers if h.get_name() == logs.HANDLER]
            assert other in root.handlers and len(ours) == 1
    finally:
        root.removeHandler(other)
