"""Every core operation against the real slapd."""

from __future__ import annotations

import re
from datetime import date

import pytest

from app.domain import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidInput,
    NewUser,
    NotFound,
    PolicyViolation,
    Profile,
    UserChanges,
)
from app.runtime import Runtime
from tests.conftest import ADMIN, PASSWORD, SlapdInstance, create, run, unique


def test_create_and_read_back_every_way(runtime: Runtime) -> None:
    name = unique("full")
    user = create(runtime, name, email=f"{name}@example.org", first_name="Ada",
                  last_name="Lovelace", phone="+44 20 1234 5678", address="1 Road\nLondon",
                  location="London", language="en-GB", bio="Analyst", gender="F",
                  birthday=date(1815, 12, 10), country="gb", timezone="Europe/London")
    assert user.account_type == "user" and user.active and user.id is not None
    assert user.display_name == "Ada Lovelace" and user.country == "GB"
    assert user.address == "1 Road\nLondon" and user.birthday == date(1815, 12, 10)
    service = runtime.service
    assert run(service.get_user(name.upper())) == user  # usernames compare case-insensitively
    assert run(service.user_by_id(user.id)) == user
    assert run(service.user_by_email(f"{name}@EXAMPLE.org")) == user
    assert run(service.user_by_uuid(user.uuid)) == user


def test_ids_are_never_reused(runtime: Runtime) -> None:
    first = create(runtime)
    run(runtime.service.delete_user(first.username))
    second = create(runtime)
    assert first.id is not None and second.id is not None and second.id > first.id


@pytest.mark.parametrize("field", ["username", "email"])
def test_duplicates_are_refused_case_insensitively(runtime: Runtime, field: str) -> None:
    name = unique("dup")
    create(runtime, name, email=f"{name}@example.org")
    other = unique("dup")
    new = NewUser(username=name.upper() if field == "username" else other, password=PASSWORD,
                  profile=Profile(email=f"{name.upper()}@example.org" if field == "email"
                                  else None))
    with pytest.raises(AlreadyExists) as caught:
        run(runtime.service.create_user(new))
    assert caught.value.field == field


POLICY = "The password does not meet the password policy (at least 8 characters)."


def test_password_policy_message_is_ours(runtime: Runtime, slapd: SlapdInstance) -> None:
    """slapd's refusal, in our words (its diagnostic text is for its log)."""
    name = unique("weak")
    with pytest.raises(PolicyViolation, match=re.escape(POLICY)):
        run(runtime.service.create_user(NewUser(username=name, password="short")))
    # nothing was left behind, anywhere
    assert slapd.ldap("ldapsearch", "-LLL", "-b", "dc=example,dc=org", f"(uid={name})",
                      "dn").stdout.strip() == ""


@pytest.mark.parametrize(("new", "field"), [
    (NewUser(username="bad name", password=PASSWORD), "username"),
    (NewUser(username="ok", password=""), "password"),
    (NewUser(username="ok2", password=PASSWORD, account_type="root"), "account_type"),
    (NewUser(username="ok3", password=PASSWORD, profile=Profile(email="nope")), "email"),
    (NewUser(username="ok4", password=PASSWORD, profile=Profile(country="GBR")), "country"),
    (NewUser(username="ok5", password=PASSWORD, profile=Profile(timezone="Mars/Base")),
     "timezone"),
    (NewUser(username="ok6", password=PASSWORD, profile=Profile(first_name="a\x00b")),
     "first_name"),
])
def test_bad_input_is_refused_before_ldap(runtime: Runtime, new: NewUser, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        run(runtime.service.create_user(new))
    assert caught.value.field == field


def test_partial_update_and_removal(runtime: Runtime) -> None:
    user = create(runtime, first_name="Grace", last_name="Hopper", location="Arlington")
    changed = run(runtime.service.update_user(user.username, UserChanges(profile=Profile(
        location=None, bio="Admiral", last_name="Murray"))))
    assert changed.location is None and changed.bio == "Admiral"
    assert changed.first_name == "Grace" and changed.last_name == "Murray"
    cleared = run(runtime.service.update_user(user.username, UserChanges(profile=Profile(
        last_name=None))))
    assert cleared.last_name is None  # sn is mandatory: it falls back to the username


def test_rename_keeps_id_type_and_groups(runtime: Runtime) -> None:
    user = create(runtime, account_type="staff")
    group = unique("g")
    run(runtime.service.create_group(group))
    run(runtime.service.add_group_member(group, user.username))
    new_name = unique("renamed")
    renamed = run(runtime.service.update_user(user.username, UserChanges(username=new_name)))
    assert (renamed.username, renamed.id, renamed.uuid, renamed.account_type) == \
        (new_name, user.id, user.uuid, "staff")
    assert run(runtime.service.get_group(group)).members == [new_name]
    with pytest.raises(NotFound):
        run(runtime.service.get_user(user.username))


def test_rename_onto_a_taken_name_is_refused(runtime: Runtime) -> None:
    a, b = create(runtime), create(runtime)
    with pytest.raises(AlreadyExists):
        run(runtime.service.update_user(a.username, UserChanges(username=b.username)))


def test_a_rename_with_a_taken_email_changes_nothing(runtime: Runtime) -> None:
    """Checked before the rename: the address is refused, the name stays."""
    a = create(runtime, email=f"{unique('m')}@example.org")
    b = create(runtime, email=f"{unique('m')}@example.org")
    new_name = unique("renamed")
    with pytest.raises(AlreadyExists) as refused:
        run(runtime.service.update_user(a.username, UserChanges(
            username=new_name, profile=Profile(email=b.email)), account_type="staff"))
    assert refused.value.field == "email"
    after = run(runtime.service.get_user(a.username))
    assert (after.username, after.email, after.account_type) == (a.username, a.email, "user")
    # His own address is no conflict.
    same = run(runtime.service.update_user(a.username, UserChanges(
        profile=Profile(email=str(a.email).upper(), first_name="Own"))))
    assert same.first_name == "Own"


def test_account_type_changes(runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime)
    for account_type in ("staff", "admin", "user"):
        changed = run(runtime.service.set_account_type(user.username, account_type))
        assert changed.account_type == account_type
        member_of = slapd.ldap("ldapsearch", "-LLL", "-b",
                               f"uid={user.username},ou=people,dc=example,dc=org", "-s", "base",
                               "memberOf").stdout
        assert member_of.count("memberOf:") == 1
        assert f"memberOf: cn={account_type},ou=groups" in member_of


def test_passwords(runtime: Runtime) -> None:
    user = create(runtime)
    service = runtime.service
    run(service.set_password(user.username, "Second-Horse-8y", current=PASSWORD))
    with pytest.raises(AuthenticationFailed):
        run(service.authenticate(user.username, PASSWORD))
    assert run(service.authenticate(user.username, "Second-Horse-8y")).uuid == user.uuid
    with pytest.raises(AuthenticationFailed):
        run(service.set_password(user.username, "Third-Horse-7z", current="wrong-one"))
    with pytest.raises(PolicyViolation, match=re.escape(POLICY)):
        run(service.set_password(user.username, "abc"))
    run(service.set_password(user.username, "Reset-By-Admin-1"))
    changed = run(service.authenticate(user.username, "Reset-By-Admin-1"))
    assert changed.password_changed is not None and changed.last_login is not None


def test_login_by_username_or_email(runtime: Runtime) -> None:
    name = unique("login")
    create(runtime, name, email=f"{name}@example.org")
    service = runtime.service
    assert run(service.authenticate(name, PASSWORD)).username == name
    assert run(service.authenticate(f"{name}@example.org", PASSWORD, by="email")).username == name
    with pytest.raises(AuthenticationFailed):
        run(service.authenticate(name, PASSWORD, by="email"))
    for login, password in ((name, ""), ("nobody-here", PASSWORD), (name, "wrong"),
                            ("bad name*", PASSWORD)):
        with pytest.raises(AuthenticationFailed):
            run(service.authenticate(login, password))


def test_disable_and_enable(runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime)
    dn = f"uid={user.username},ou=people,dc=example,dc=org"
    assert not run(runtime.service.disable_user(user.username)).active
    with pytest.raises(AuthenticationFailed):
        run(runtime.service.authenticate(user.username, PASSWORD))
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none",
                      check=False).returncode == 49
    assert run(runtime.service.enable_user(user.username)).active
    assert run(runtime.service.authenticate(user.username, PASSWORD)).active


def test_delete(runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime, account_type="staff")
    run(runtime.service.delete_user(user.username))
    with pytest.raises(NotFound):
        run(runtime.service.get_user(user.username))
    groups = slapd.ldap("ldapsearch", "-LLL", "-b", "ou=groups,dc=example,dc=org",
                        f"(member=uid={user.username},ou=people,dc=example,dc=org)", "dn")
    assert groups.stdout.strip() == ""
    with pytest.raises(NotFound):
        run(runtime.service.delete_user(user.username))


def test_groups(runtime: Runtime) -> None:
    service = runtime.service
    name = unique("team")
    user = create(runtime)
    created = run(service.create_group(name, "A team"))
    assert (created.members, created.description, created.account_type) == ([], "A team", False)
    with pytest.raises(AlreadyExists):
        run(service.create_group(name))
    assert run(service.add_group_member(name, user.username)).members == [user.username]
    assert run(service.add_group_member(name, user.username)).members == [user.username]
    assert name in [g.name for g in run(service.list_groups())]
    assert run(service.remove_group_member(name, user.username)).members == []
    with pytest.raises(NotFound):
        run(service.remove_group_member(name, user.username))
    run(service.delete_group(name))
    with pytest.raises(NotFound):
        run(service.get_group(name))
    with pytest.raises(InvalidInput):
        run(service.delete_group("admin"))
    with pytest.raises(InvalidInput):
        run(service.add_group_member("staff", user.username))


def test_bootstrap_is_idempotent(runtime: Runtime) -> None:
    assert run(runtime.service.bootstrap(ADMIN, "", "")) is None
    assert run(runtime.service.bootstrap("someone-else", "", "")) is None
    with pytest.raises(NotFound):
        run(runtime.service.get_user("someone-else"))


@pytest.mark.parametrize("password", ["Non\u00a0Breaking-Space-1", "Ligature-\ufb01-Word-2",
                                      "Tab\tInside-Password-3"])
def test_passwords_are_checked_exactly_as_set(runtime: Runtime, password: str) -> None:
    """ldap3 applies SASLprep to bind passwords (mapping, normalising, refusing
    control characters) unless given bytes; slapd hashed the password as it
    was set. A password must verify exactly as received (ASVS 6.2.8)."""
    user = run(runtime.service.create_user(NewUser(username=unique("prep"), password=password)))
    assert run(runtime.service.authenticate(user.username, password)).uuid == user.uuid
    with pytest.raises(AuthenticationFailed):
        run(runtime.service.authenticate(user.username, password.replace("\u00a0", " ")
                                         .replace("\ufb01", "fi").replace("\t", " ")))
