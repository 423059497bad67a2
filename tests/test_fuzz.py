"""Property-based fuzzing of the OpenAPI document (schemathesis): no 5xx, and
every response as documented (status code, content type, body schema)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from app.config import Config
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, run, serving

EXAMPLES = 150 if os.environ.get("USERDIR_SOAK") == "1" else 12
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def server(private_config: Config) -> Iterator[str]:
    """A real server on a directory of its own: the fuzzer deletes and renames."""
    runtime = Runtime.build(private_config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    runtime.close()
    with serving(private_config) as url:
        yield url


@pytest.fixture(scope="module")
def admin_headers(server: str) -> dict[str, str]:
    token = httpx.post(f"{server}/auth/token", json={"username": ADMIN,
                                                     "password": ADMIN_PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture(scope="module")
def native_schema(server: str) -> Any:
    return schemathesis.openapi.from_url(f"{server}/schema/openapi.json")


@pytest.mark.parametrize("who", ["admin", "anonymous"])
def test_native_api(native_schema: Any, admin_headers: dict[str, str], who: str) -> None:
    """Every operation, as an admin (the widest permissions) and anonymously:
    generated paths, queries and bodies, valid and not. schemathesis' pytest plugin does not
    run under pytest 9, so hypothesis drives each operation's strategy."""
    operations = [result.ok() for result in native_schema.get_all_operations()]
    assert len(operations) >= 20
    statuses: dict[int, int] = {}
    calls: dict[str, int] = {}
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            headers = admin_headers if who == "admin" else None
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1

        check()
    # The fuzzer reached every operation, and tried many inputs where there
    # are any (hypothesis stops early on an operation that takes none).
    assert {op.label for op in operations} <= set(calls)
    with_input = [op.label for op in operations if any(True for _ in op.iter_parameters())
                  or op.get_request_payload_content_types()]
    assert sum(calls[label] for label in with_input) > 10 * len(with_input)
    expected = {400, 404, 422} if who == "admin" else {401}
    assert {200, 201, 204} & set(statuses) and expected <= set(statuses), statuses
