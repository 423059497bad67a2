"""Pages of users written directly (app/scim/listing.py) say exactly what scim2-server would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from scim2_models import Context, SearchRequest
from scim2_server.service import ScimService
from scim2_server.storage import SearchPage

from app.accounts import Account, AccountState, Address, GroupRef
from app.scim import convert, listing
from app.scim.listing import is_plain, page_body, published_user
from app.scim.schemas import build
from tests.conftest import ADMIN, ADMIN_PASSWORD, serving
from tests.scim_support import ENTERPRISE, USER, USERDIR, bootstrapped_config, quick_slapd

BASE_URL = "https://id.example.org/scim/v2/"
MODELS = build(["user", "staff", "admin"])
FULL = AccountState(
    username="alice", active=False, account_type="staff", external_id="okta-1",
    email="alice@example.org", first_name="Alice", last_name="Liddell",
    display_name="Alice L.", title="Dr", phones={"work": "+1 555 0100", "fax": "+1 555 0101"},
    address=Address(formatted="1 Main St", street="Main St", locality="Paris",
                    region="IdF", postal_code="75001", country="FR"),
    language="fr", locale="fr-FR", timezone="Europe/Paris", employee_number="42",
    department="R&D", manager="11111111-1111-4111-8111-111111111111")
ACCOUNTS = [
    Account(uuid="22222222-2222-4222-8222-222222222222", state=FULL,
            groups=(GroupRef("33333333-3333-4333-8333-333333333333", "devs"),
                    GroupRef("44444444-4444-4444-8444-444444444444", "ops")),
            created=datetime(2026, 1, 1, tzinfo=UTC),
            updated=datetime(2026, 2, 3, 4, 5, 6, 120000, tzinfo=UTC),
            version="20260203040506.120000Z#000000#000#000000"),
    Account(uuid="55555555-5555-4555-8555-555555555555",
            state=AccountState(username="bob", account_type="user"), version="v1"),
    Account(uuid="66666666-6666-4666-8666-666666666666",
            state=AccountState(username="carol", account_type="admin", department="HR",
                               address=Address(country="DE")),
            created=datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2))),
            version="v2"),
]


def library_page(search: SearchRequest[Any], total: int,
                 accounts: list[Account]) -> dict[str, Any]:
    """What scim2-server answers for these accounts, as DirectoryStorage gives them."""
    service = ScimService(MODELS.provider)
    resources = [MODELS.user.model_validate(convert.user_document(a)) for a in accounts]
    with service.provider:
        response = service.search_response(BASE_URL, [MODELS.user_type],
                                           SearchPage(total=total, resources=resources), search)
    body: dict[str, Any] = response.body  # type: ignore[assignment]
    return body


@pytest.mark.parametrize("search", [SearchRequest(start_index=1, count=100),
                                    SearchRequest(), SearchRequest(start_index=7, count=2)])
def test_a_page_is_what_the_library_writes(search: SearchRequest[Any]) -> None:
    for accounts in (ACCOUNTS, ACCOUNTS[1:2], []):
        mine = page_body(search, 12, [published_user(convert.user_document(a), BASE_URL)
                                      for a in accounts])
        assert mine == library_page(search, 12, accounts)


def test_each_user_is_what_the_library_dumps() -> None:
    service = ScimService(MODELS.provider)
    for account in ACCOUNTS:
        document = convert.user_document(account)
        with service.provider:
            dumped = service.publish(BASE_URL, MODELS.user.model_validate(document)).model_dump(
                scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=SearchRequest())
        assert published_user(document, BASE_URL) == dumped


def test_only_plain_pages_are_written_directly() -> None:
    assert is_plain(SearchRequest.model_validate(
        {"startIndex": 3, "count": 5, "filter": 'userName sw "a"'}))
    assert not is_plain(SearchRequest.model_validate({"attributes": ["userName"]}))
    assert not is_plain(SearchRequest.model_validate({"excludedAttributes": ["groups"]}))


# --- the same through the served app -----------------------------------------

@pytest.fixture(scope="module")
def scim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    where = tmp_path_factory.mktemp("scim-listing")
    with quick_slapd(where) as slapd:
        config = bootstrapped_config(slapd, where / "api")
        with serving(config) as url:
            token = httpx.post(f"{url}/auth/token", json={
                "username": ADMIN, "password": ADMIN_PASSWORD}).json()["access_token"]
            with httpx.Client(base_url=f"{url}/scim/v2", timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                yield client


def test_a_served_page_matches_the_library_search(scim: httpx.Client,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /Users (written directly) and POST /Users/.search (scim2-server's
    own way) over the same directory: the same JSON, user by user."""
    written: list[str] = []

    def counted(document: dict[str, Any], base_url: str) -> dict[str, Any]:
        written.append(document["userName"])
        return published_user(document, base_url)

    monkeypatch.setattr(listing, "published_user", counted)
    boss = scim.post("/Users", json={"schemas": [USER], "userName": "boss"}).json()
    made = scim.post("/Users", json={
        "schemas": [USER, ENTERPRISE, USERDIR], "userName": "worker", "externalId": "e-7",
        "name": {"givenName": "Wendy", "familyName": "Worker"}, "title": "Eng",
        "emails": [{"value": "wendy@example.org", "type": "work"}],
        "phoneNumbers": [{"value": "+33 1 23 45 67 89", "type": "mobile"}],
        "addresses": [{"locality": "Lyon", "country": "FR", "type": "work"}],
        ENTERPRISE: {"department": "Ops", "manager": {"value": boss["id"]}},
        USERDIR: {"accountType": "staff"}})
    assert made.status_code == 201, made.text
    team = scim.post("/Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                      "displayName": "crew",
                                      "members": [{"value": made.json()["id"]}]})
    assert team.status_code == 201, team.text
    queries: list[dict[str, str | int]] = [
        {"sortBy": "userName", "startIndex": 1, "count": 50},
        {"filter": 'userName eq "worker"'},
        {"startIndex": 2, "count": 1, "sortBy": "userName"},
        {"filter": 'userName eq "nobody"'}]
    for query in queries:
        direct = scim.get("/Users", params=query)
        library = scim.post("/Users/.search", json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], **query})
        assert direct.status_code == library.status_code == 200, (direct.text, library.text)
        assert direct.json() == library.json()
    assert "worker" in written  # the GETs were written directly
    listed = scim.get("/Users", params={"filter": 'userName eq "worker"'}).json()
    worker = listed["Resources"][0]
    assert worker["groups"][0]["display"] == "crew"
    assert worker[ENTERPRISE]["manager"]["$ref"].endswith(f"/Users/{boss['id']}")
    assert "password" not in worker


def test_asked_attributes_still_go_the_library_way(scim: httpx.Client) -> None:
    answer = scim.get("/Users", params={"attributes": "userName", "count": 5})
    assert answer.status_code == 200
    for resource in answer.json()["Resources"]:
        assert set(resource) <= {"schemas", "id", "userName", "meta"}
