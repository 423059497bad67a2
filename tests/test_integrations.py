"""docs/integrations.md, run: its Django settings and each LDAP filter it gives, on slapd."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test.utils import override_settings
from ldap.filter import escape_filter_chars

from app.config import Config
from app.domain import NewUser, Profile
from app.runtime import Runtime
from tests.conftest import PASSWORD, SlapdInstance, create, run, unique

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
PEOPLE = "ou=people,dc=example,dc=org"
RESET = "Reset-By-Admin-1"  # a password the session-wide leak check looks for too

# The filters as the page prints them; each test first checks that the page
# still says exactly this, so the page cannot drift from what was run.
NSLCD_AUTHZ = ("(&(objectClass=posixAccount)(uid=$username)(!(pwdEndTime=*))"
               "(!(pwdAccountLockedTime=*)))")
NSLCD_STAFF_ONLY = ("(&(objectClass=posixAccount)(uid=$username)(!(pwdEndTime=*))"
                    "(!(pwdAccountLockedTime=*))(|(memberOf=cn=staff,ou=groups,dc=example,dc=org)"
                    "(memberOf=cn=admin,ou=groups,dc=example,dc=org)))")
SSSD_ACCESS = "(&(!(pwdEndTime=*))(!(pwdAccountLockedTime=*)))"
KEYCLOAK_USERS = "(!(pwdEndTime=*))"
GITEA_USERS = "(&(objectClass=inetOrgPerson)(uid=%[1]s)(!(pwdEndTime=*)))"
GITEA_ADMINS = "(memberOf=cn=admin,ou=groups,dc=example,dc=org)"
GRAFANA_USERS = "(&(objectClass=inetOrgPerson)(uid=%s)(!(pwdEndTime=*)))"


def page() -> str:
    return DOC.read_text()


def django_recipe() -> str:
    """The page's one Python block: the Django settings."""
    blocks = re.findall(r"```python\n(.*?)```", page(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/integrations.md should hold exactly one Python block"
    return str(blocks[0])


def settings_of(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    # Running the page's own text, not a copy of it, is what keeps the
    # recipe tested; the text is this repository's.
    exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102
    return {name: value for name, value in namespace.items() if name.isupper()}


@pytest.fixture(scope="module")
def django_ldap(slapd: SlapdInstance) -> dict[str, Any]:
    """Django configured in this process with the page's settings, pointed at
    the session's slapd through the two environment variables they read."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDAP_URL", slapd.url)
        patch.setenv("LDAP_BIND_PASSWORD", slapd.service_password)
        recipe = settings_of(django_recipe())
    if not settings.configured:  # Django can be configured once per process
        settings.configure(
            **recipe,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            SECRET_KEY=unique("django-secret-"),
            USE_TZ=True,
            # Django's logging setup (dictConfig) would close the handlers
            # already installed, the session's leak check among them.
            LOGGING_CONFIG=None,
        )
        django.setup()
        call_command("migrate", verbosity=0)
    return recipe


def sign_in(username: str, password: str) -> Any:
    # Imported here: django.contrib.auth needs the settings configured first.
    from django.contrib.auth import authenticate

    return authenticate(username=username, password=password)


# --- django-auth-ldap ----------------------------------------------------------


def test_a_user_gets_his_names_and_email_and_no_flags(django_ldap: dict[str, Any],
                                                       runtime: Runtime) -> None:
    person = create(runtime, account_type="user", first_name="Ada", last_name="Lovelace",
                    email=f"{unique('ada')}@example.org")
    user = sign_in(person.username, PASSWORD)
    assert user is not None
    assert (user.username, user.first_name, user.last_name, user.email) == (
        person.username.lower(), "Ada", "Lovelace", person.email)
    assert (user.is_staff, user.is_superuser) == (False, False)


def test_staff_is_staff(django_ldap: dict[str, Any], runtime: Runtime) -> None:
    user = sign_in(create(runtime, account_type="staff").username, PASSWORD)
    assert user is not None
    assert (user.is_staff, user.is_superuser) == (True, False)


def test_an_admin_is_staff_and_superuser(django_ldap: dict[str, Any], runtime: Runtime) -> None:
    user = sign_in(create(runtime, account_type="admin").username, PASSWORD)
    assert user is not None
    assert (user.is_staff, user.is_superuser) == (True, True)


def test_a_type_change_counts_at_the_next_login(django_ldap: dict[str, Any],
                                                runtime: Runtime) -> None:
    name = create(runtime, account_type="user").username
    assert sign_in(name, PASSWORD).is_staff is False
    run(runtime.service.set_account_type(name, "admin"))
    again = sign_in(name, PASSWORD)
    assert (again.is_staff, again.is_superuser) == (True, True)
    run(runtime.service.set_account_type(name, "user"))
    assert (sign_in(name, PASSWORD).is_staff, sign_in(name, PASSWORD).is_superuser) == (
        False, False)


def test_a_wrong_password_is_refused(django_ldap: dict[str, Any], runtime: Runtime) -> None:
    name = create(runtime).username
    assert sign_in(name, "Not-The-Password-7") is None
    assert sign_in(unique("nobody"), PASSWORD) is None


def test_a_disabled_user_is_refused(django_ldap: dict[str, Any], runtime: Runtime) -> None:
    name = create(runtime, account_type="staff").username
    assert sign_in(name, PASSWORD) is not None
    run(runtime.service.disable_user(name))
    assert sign_in(name, PASSWORD) is None


def test_a_disabled_user_stays_refused_after_an_admin_resets_his_password(
        django_ldap: dict[str, Any], runtime: Runtime) -> None:
    name = create(runtime).username
    run(runtime.service.disable_user(name))
    run(runtime.service.set_password(name, RESET))
    assert sign_in(name, RESET) is None
    assert sign_in(name, PASSWORD) is None
    # The reset did happen: enabled again, the new password is the one.
    run(runtime.service.enable_user(name))
    assert sign_in(name, RESET) is not None
    assert sign_in(name, PASSWORD) is None


def test_the_dn_template_variant_works_the_same(django_ldap: dict[str, Any],
                                                runtime: Runtime) -> None:
    commented = "# AUTH_LDAP_USER_DN_TEMPLATE = "
    assert commented in django_recipe()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDAP_BIND_PASSWORD", "unused here")
        variant = settings_of(django_recipe().replace(commented, "AUTH_LDAP_USER_DN_TEMPLATE = "))
    staff = create(runtime, account_type="staff").username
    disabled = create(runtime).username
    run(runtime.service.disable_user(disabled))
    with override_settings(AUTH_LDAP_USER_SEARCH=None,
                           AUTH_LDAP_USER_DN_TEMPLATE=variant["AUTH_LDAP_USER_DN_TEMPLATE"]):
        user = sign_in(staff, PASSWORD)
        assert user is not None and user.is_staff
        assert sign_in(disabled, PASSWORD) is None
        assert sign_in(staff, "Not-The-Password-7") is None


# --- the filters of nslcd, sssd, Keycloak, Gitea and Grafana ---------------------


@pytest.fixture(scope="module")
def accounts(slapd: SlapdInstance, config: Config, bootstrapped: None) -> dict[str, str]:
    """One account in each state the filters must tell apart: kind -> username."""
    built = Runtime.build(config)
    try:
        made = {kind: create(built, account_type=kind).username
                for kind in ("user", "staff", "admin")}
        made |= {state: create(built).username
                 for state in ("disabled", "locked", "locked_forever")}
        run(built.service.disable_user(made["disabled"]))
        signed_up, _code = run(built.service.sign_up(NewUser(
            username=unique("signup"), password=PASSWORD,
            profile=Profile(email=f"{unique('signup')}@example.org"))))
        made["signup"] = signed_up.username
    finally:
        built.close()
    # Twenty wrong passwords within five minutes: ppolicy's temporary lockout.
    for _ in range(20):
        slapd.ldap("ldapwhoami", "-D", f"uid={made['locked']},{PEOPLE}",
                   "-w", "Not-The-Password-7", bind="none", check=False)
    # How other tools disable an account.
    slapd.ldap("ldapmodify", stdin=(f"dn: uid={made['locked_forever']},{PEOPLE}\n"
                                    "changetype: modify\nadd: pwdAccountLockedTime\n"
                                    "pwdAccountLockedTime: 000001010000Z\n"))
    return made


def matches(slapd: SlapdInstance, ldap_filter: str, placeholder: str | None,
            username: str) -> bool:
    """Does the filter select this person's entry? Searched on his entry
    alone, as the service account, the way each program applies it."""
    if placeholder is not None:
        ldap_filter = ldap_filter.replace(placeholder, escape_filter_chars(username))
    found = slapd.ldap("ldapsearch", "-LLL", "-b", f"uid={username},{PEOPLE}", "-s", "base",
                       ldap_filter, "1.1").stdout
    return "dn:" in found


ALL_ACTIVE = {"user": True, "staff": True, "admin": True}
NO_DISABLED = {"disabled": False, "signup": False, "locked_forever": False}
NO_LOCKED = {"locked": False}


@pytest.mark.parametrize(("ldap_filter", "placeholder", "expected"), [
    pytest.param(NSLCD_AUTHZ, "$username", {**ALL_ACTIVE, **NO_DISABLED, **NO_LOCKED},
                 id="nslcd pam_authz_search"),
    pytest.param(NSLCD_STAFF_ONLY, "$username",
                 {"user": False, "staff": True, "admin": True, **NO_DISABLED, **NO_LOCKED},
                 id="nslcd pam_authz_search, staff and admins only"),
    pytest.param(SSSD_ACCESS, None, {**ALL_ACTIVE, **NO_DISABLED, **NO_LOCKED},
                 id="sssd ldap_access_filter"),
    # Keycloak, Gitea and Grafana check the password by binding as the user,
    # which ppolicy refuses while locked; their filters keep out what binds
    # cannot tell them: disabled accounts and unverified sign-ups.
    pytest.param(KEYCLOAK_USERS, None,
                 {**ALL_ACTIVE, "disabled": False, "signup": False}, id="Keycloak user filter"),
    pytest.param(GITEA_USERS, "%[1]s",
                 {**ALL_ACTIVE, "disabled": False, "signup": False}, id="Gitea user filter"),
    pytest.param(GITEA_ADMINS, None, {"user": False, "staff": False, "admin": True},
                 id="Gitea admin filter"),
    pytest.param(GRAFANA_USERS, "%s",
                 {**ALL_ACTIVE, "disabled": False, "signup": False}, id="Grafana search_filter"),
])
def test_the_filter_selects_the_right_accounts(slapd: SlapdInstance, accounts: dict[str, str],
                                               ldap_filter: str, placeholder: str | None,
                                               expected: dict[str, bool]) -> None:
    assert ldap_filter in page()
    seen = {kind: matches(slapd, ldap_filter, placeholder, accounts[kind]) for kind in expected}
    assert seen == expected


def test_grafana_group_mappings_name_each_account_type(slapd: SlapdInstance,
                                                      accounts: dict[str, str]) -> None:
    """Grafana maps roles from the user's memberOf: each type's group DN,
    as the page writes it, is among the user's memberOf values."""
    text = page()
    for kind, role in (("admin", "Admin"), ("staff", "Editor"), ("user", "Viewer")):
        group = f"cn={kind},ou=groups,dc=example,dc=org"
        assert f'group_dn = "{group}"\norg_role = "{role}"' in text
        entry = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b",
                           f"uid={accounts[kind]},{PEOPLE}", "-s", "base", "memberOf").stdout
        assert f"memberOf: {group}" in entry
