"""Listing: filters, sort keys, windows, and a page cost that does not grow with the directory."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from app.config import Config
from app.domain import Busy, Combine, InvalidInput, Match, Order, SortKey, UserQuery
from app.runtime import Runtime
from tests.conftest import SlapdInstance, create, make_config, run, start_slapd, unique

SIZE = 10_000


def generated_people(count: int) -> str:
    """LDIF for `count` people as an LDAP tool would write them; every 7th disabled."""
    records = []
    for i in range(count):
        name = f"member{i:05d}"
        records.append(
            f"dn: uid={name},ou=people,dc=example,dc=org\n"
            "objectClass: inetOrgPerson\nobjectClass: posixAccount\n"
            f"uid: {name}\ncn: Member {count - i:05d}\nsn: Member\nmail: {name}@example.org\n"
            f"uidNumber: {20000 + i}\ngidNumber: 10000\nhomeDirectory: /home/{name}\n"
            + ("pwdAccountLockedTime: 000001010000Z\n" if i % 7 == 0 else "")
        )
    return "\n".join(records)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    base = tmp_path_factory.mktemp("big")
    instance: SlapdInstance = start_slapd(base / "slapd", generated_people(SIZE))
    config: Config = make_config(instance, base / "userdir", listing={"context_ttl": 60})
    runtime = Runtime.build(config)
    try:
        yield runtime
    finally:
        runtime.close()
        instance.process.stop()


def page(runtime: Runtime, **query: object) -> tuple[list[str], int]:
    found = run(runtime.service.list_users(UserQuery(**query)))  # type: ignore[arg-type]
    return [u.username for u in found.users], found.total


def test_first_and_last_page_cost_the_same_at_10k(big: Runtime) -> None:
    ldap, listing = big.directory.ldap, big.directory.listing
    costs = []
    sorts = listing.sorts_started
    for offset in (0, SIZE - 50, 5000, 0):
        before = ldap.entries_received
        names, total = page(big, sort=SortKey.USERNAME, offset=offset, limit=50)
        costs.append(ldap.entries_received - before)
        assert total == SIZE and len(names) == 50
    assert costs == [50, 50, 50, 50]  # entries transferred: one page, wherever it is
    assert listing.sorts_started == sorts + 1  # slapd sorted once; the rest walked its tree


def test_windows_are_in_order(big: Runtime) -> None:
    first, _ = page(big, sort=SortKey.USERNAME, offset=0, limit=3)
    last, _ = page(big, sort=SortKey.USERNAME, offset=SIZE - 2, limit=5)
    assert first == ["member00000", "member00001", "member00002"]
    assert last == ["member09998", "member09999"]
    reverse, _ = page(big, sort=SortKey.USERNAME, descending=True, offset=0, limit=2)
    assert reverse == ["member09999", "member09998"]
    by_name, _ = page(big, sort=SortKey.DISPLAY_NAME, offset=0, limit=2)
    assert by_name == ["member09999", "member09998"]  # cn counts down
    by_id, _ = page(big, sort=SortKey.ID, descending=True, offset=0, limit=1)
    assert by_id == ["member09999"]


def test_past_the_end_is_empty_with_the_total(big: Runtime) -> None:
    assert page(big, sort=SortKey.USERNAME, offset=SIZE + 10, limit=10) == ([], SIZE)


def test_filters(big: Runtime) -> None:
    names, total = page(big, text="member0999", sort=SortKey.USERNAME, limit=20)
    assert total == 10 and names[0] == "member09990"
    _, disabled = page(big, active=False, limit=1)
    assert disabled == len(range(0, SIZE, 7))
    _, active = page(big, active=True, limit=1)
    assert active == SIZE - disabled
    assert page(big, exact=(("email", "member00042@example.org"),), limit=5) == \
        (["member00042"], 1)
    assert page(big, text=")(uid=*", limit=5) == ([], 0)  # a value, never filter syntax
    assert page(big, text="*", limit=5) == ([], 0)


def test_account_type_filter_and_order(runtime: Runtime) -> None:
    tag = unique("ord")
    made = [create(runtime, f"{tag}{i}", account_type=t).username
            for i, t in enumerate(["user", "admin", "staff", "user"])]
    names, total = page(runtime, text=tag, sort=SortKey.ACCOUNT_TYPE, limit=10)
    assert total == 4 and names == [made[0], made[3], made[2], made[1]]
    names, _ = page(runtime, text=tag, sort=SortKey.ACCOUNT_TYPE, descending=True, limit=10)
    assert names == [made[1], made[2], made[0], made[3]]  # ties stay in creation order
    names, _ = page(runtime, text=tag, sort=SortKey.ACCOUNT_TYPE, offset=1, limit=2)
    assert names == [made[3], made[2]]
    names, total = page(runtime, text=tag, account_type="user", limit=10)
    assert (names, total) == ([made[0], made[3]], 2)


def test_writes_through_the_service_show_at_once(runtime: Runtime) -> None:
    tag = unique("fresh")
    create(runtime, f"{tag}a")
    assert page(runtime, text=tag, limit=10)[1] == 1
    create(runtime, f"{tag}b")
    assert page(runtime, text=tag, limit=10)[1] == 2
    run(runtime.service.delete_user(f"{tag}a"))
    assert page(runtime, text=tag, limit=10) == ([f"{tag}b"], 1)


def test_unknown_exact_field_is_refused(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput):
        page(runtime, exact=(("password", "x"),))


def test_filter_trees_become_one_ldap_filter(runtime: Runtime) -> None:
    tag = unique("tree")
    names = {key: create(runtime, f"{tag}{key}", first_name=first, last_name=last,
                         account_type=kind).username
             for key, first, last, kind in (("a", "Ann", "Smith", "user"),
                                            ("b", "Bob", "Smith", "staff"),
                                            ("c", "Cid", "Jones", "admin"),
                                            ("d", "ann", "Brown", "user"))}
    mine = Match(field="username", value=tag, contains=True)

    def where(expression: Combine | Match) -> set[str]:
        found, _ = page(runtime, where=Combine(parts=(mine, expression)), limit=20)
        return set(found)

    assert where(Match(field="last_name", value="smith")) == {names["a"], names["b"]}
    assert where(Match(field="first_name", value="ann", case_sensitive=True)) == {names["d"]}
    assert where(Match(field="first_name", value="AN", contains=True)) == {names["a"], names["d"]}
    assert where(Match(field="last_name", value="Smith", negate=True)) == {names["c"], names["d"]}
    assert where(Combine(any=True, parts=(Match(field="first_name", value="Bob"),
                                          Match(field="account_type", value="admin")))) == \
        {names["b"], names["c"]}
    assert where(Combine(negate=True, parts=(Match(field="last_name", value="Smith"),
                                             Match(field="account_type", value="user")))) == \
        {names["b"], names["c"], names["d"]}
    assert where(Match(field="active", value="false")) == set()
    assert where(Match(field="first_name", value="*", contains=True)) == set()
    for bad in (Match(field="password", value="x"), Match(field="id", value="1", contains=True),
                Match(field="account_type", value="root"), Combine(parts=())):
        with pytest.raises(InvalidInput):
            where(bad)


def test_several_sort_keys(runtime: Runtime) -> None:
    tag = unique("keys")
    made = [create(runtime, f"{tag}{i}", first_name=first, last_name=last).username
            for i, (first, last) in enumerate([("Zed", "Alpha"), ("Amy", "Beta"),
                                               ("Amy", "Alpha"), ("Bob", "Alpha")])]
    names, _ = page(runtime, text=tag, sort=SortKey.LAST_NAME,
                    then=(Order(SortKey.FIRST_NAME, descending=True),), limit=10)
    assert names == [made[0], made[3], made[2], made[1]]
    names, _ = page(runtime, text=tag, sort=SortKey.FIRST_NAME, limit=10)
    assert names == [made[1], made[2], made[3], made[0]]  # Amy twice: creation order
    with pytest.raises(InvalidInput):
        page(runtime, text=tag, sort=SortKey.USERNAME, then=(Order(SortKey.ACCOUNT_TYPE),))


def test_all_users_comes_in_windows_the_same_as_at_once(runtime: Runtime) -> None:
    tag = unique("all")
    made = [create(runtime, f"{tag}{i}").username for i in range(5)]
    query = UserQuery(text=tag, sort=SortKey.ID)
    small = run(runtime.service.all_users(query, chunk=2))
    assert [u.username for u in small] == made
    assert small == run(runtime.service.all_users(query))


def test_too_many_sort_contexts_is_busy_not_an_error(private_config: Config) -> None:
    """slapd keeps at most olcSssVlvMax (16) sort contexts; the 17th sort is
    refused with busy (51), which the service reports as retryable."""
    config = msgspec.structs.replace(
        private_config, listing=msgspec.structs.replace(private_config.listing, contexts=16))
    holders = [Runtime.build(config), Runtime.build(config)]
    try:
        for i in range(17):  # an empty result keeps no context: give each a match
            create(holders[0], f"ctx{i}x")
        with pytest.raises(Busy):
            for i in range(17):  # each query a distinct filter: a new context each
                run(holders[i % 2].service.list_users(UserQuery(text=f"ctx{i}x", limit=1)))
        for runtime in holders:
            runtime.directory.listing.close()  # closing the connections frees them
        assert run(holders[0].service.list_users(UserQuery(text="after", limit=1))).total == 0
    finally:
        for runtime in holders:
            runtime.close()


def test_empty_values_mean_present_and_absent(runtime: Runtime) -> None:
    tag = unique("empty")
    with_mail = create(runtime, f"{tag}a", email=f"{tag}a@example.org").username
    without = create(runtime, f"{tag}b").username
    mine = Match(field="username", value=tag, contains=True)

    def where(expression: Match) -> list[str]:
        return page(runtime, where=Combine(parts=(mine, expression)), sort=SortKey.ID,
                    limit=10)[0]

    assert where(Match(field="email", value="", contains=True)) == [with_mail]
    assert where(Match(field="email", value="")) == [without]
    assert where(Match(field="email", value="", contains=True, negate=True)) == [without]


def test_the_display_name_matched_is_the_one_shown(runtime: Runtime) -> None:
    """Without displayName a user is shown, and found, by his cn."""
    tag = unique("shown")
    named = create(runtime, f"{tag}a", display_name=f"Zed {tag}").username
    by_cn = create(runtime, f"{tag}b", first_name="Zed", last_name=tag).username
    mine = Match(field="username", value=tag, contains=True)

    def where(expression: Match) -> list[str]:
        return page(runtime, where=Combine(parts=(mine, expression)), sort=SortKey.ID,
                    limit=10)[0]

    assert where(Match(field="display_name", value="zed", contains=True)) == [named, by_cn]
    assert where(Match(field="display_name", value=f"Zed {tag}")) == [named, by_cn]
    assert where(Match(field="display_name", value=f"Zed {tag}", negate=True)) == []
    # Every shown name contains "", and none is empty.
    assert where(Match(field="display_name", value="", contains=True)) == [named, by_cn]
    assert where(Match(field="display_name", value="")) == []


def test_admins_last_keeps_creation_order_across_other_types(runtime: Runtime) -> None:
    tag = unique("isadm")
    made = [create(runtime, f"{tag}{i}", account_type=t).username
            for i, t in enumerate(["staff", "admin", "user", "staff"])]
    names, total = page(runtime, text=tag, sort=SortKey.IS_ADMIN, limit=10)
    assert total == 4 and names == [made[0], made[2], made[3], made[1]]
    names, _ = page(runtime, text=tag, sort=SortKey.IS_ADMIN, descending=True, limit=10)
    assert names == [made[1], made[0], made[2], made[3]]
