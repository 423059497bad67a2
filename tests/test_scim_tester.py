"""scim2-tester, the independent SCIM compliance checker, against the running service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from tests.conftest import ADMIN, ADMIN_PASSWORD, serving
from tests.scim_support import bootstrapped_config, quick_slapd

FAILED = {Status.ERROR, Status.CRITICAL}


@pytest.fixture(scope="module")
def scim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    where = tmp_path_factory.mktemp("scim-tester")
    with quick_slapd(where) as slapd, \
            serving(bootstrapped_config(slapd, where / "api")) as url:
        token = httpx.post(f"{url}/auth/token", json={
            "username": ADMIN, "password": ADMIN_PASSWORD}).json()["access_token"]
        yield url, token


def test_scim2_tester_finds_every_check_passing(scim_url: tuple[str, str]) -> None:
    """Discovery, CRUD and PATCH add/replace/remove of every published
    attribute of Users and Groups: no check fails."""
    url, token = scim_url
    with httpx2.Client(base_url=f"{url}/scim/v2",
                       headers={"Authorization": f"Bearer {token}"}) as http:
        results = check_server(SyncSCIMClient(http))
    failed = [r for r in results if r.status in FAILED]
    assert not failed, "\n".join(f"{r.resource_type} {r.title}: {r.reason}" for r in failed)
    passed = [r for r in results if r.status == Status.SUCCESS]
    assert len(passed) > 50
