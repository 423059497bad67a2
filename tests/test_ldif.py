"""What ldif/ makes slapd do, checked with the OpenLDAP tools an operator would use."""

from __future__ import annotations

import base64

from tests.conftest import PASSWORD, SlapdInstance, unique

PEOPLE = "ou=people,dc=example,dc=org"


def add_person(slapd: SlapdInstance, username: str, extra: str = "") -> str:
    dn = f"uid={username},{PEOPLE}"
    slapd.ldap("ldapadd", stdin=(
        f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {username}\ncn: {username}\n"
        f"sn: {username}\nuserPassword: {PASSWORD}\n{extra}"))
    return dn


def test_cleartext_password_is_stored_argon2_hashed(slapd: SlapdInstance) -> None:
    dn = add_person(slapd, unique("hash"))
    stored = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base",
                        "userPassword", bind="root").stdout
    assert "userPassword::" in stored  # base64: the value is binary-safe, not the cleartext
    value = base64.b64decode(stored.split("userPassword::")[1].split()[0])
    assert value.startswith(b"{ARGON2}$argon2")
    assert PASSWORD.encode() not in value


def test_permanently_locked_account_cannot_bind(slapd: SlapdInstance) -> None:
    dn = add_person(slapd, unique("locked"), "pwdAccountLockedTime: 000001010000Z\n")
    denied = slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none", check=False)
    assert denied.returncode == 49, denied.stderr  # invalidCredentials
    slapd.ldap("ldapmodify", stdin=f"dn: {dn}\nchangetype: modify\ndelete: pwdAccountLockedTime\n")
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none").stdout.strip() \
        == f"dn:{dn}"


def test_service_account_cannot_read_passwords(slapd: SlapdInstance) -> None:
    dn = add_person(slapd, unique("secret"))
    seen = slapd.ldap("ldapsearch", "-LLL", "-b", dn, "-s", "base", "*").stdout
    assert "uid:" in seen and "userPassword" not in seen


def test_anonymous_sees_nothing(slapd: SlapdInstance) -> None:
    add_person(slapd, unique("anon"))
    result = slapd.ldap("ldapsearch", "-LLL", "-b", "dc=example,dc=org", "(objectClass=*)",
                        bind="none", check=False)
    assert result.stdout.strip() == ""
    assert result.returncode == 32  # noSuchObject: not even the base is visible


def test_user_reads_only_his_own_entry_and_writes_nothing(slapd: SlapdInstance) -> None:
    me = add_person(slapd, unique("self"))
    other = add_person(slapd, unique("other"))
    own = ["-D", me, "-w", PASSWORD]
    assert "uid:" in slapd.ldap("ldapsearch", *own, "-LLL", "-b", me, "-s", "base",
                                bind="none").stdout
    assert slapd.ldap("ldapsearch", *own, "-LLL", "-b", other, "-s", "base", bind="none",
                      check=False).stdout.strip() == ""
    refused = slapd.ldap("ldapmodify", *own, bind="none", check=False,
                         stdin=f"dn: {me}\nchangetype: modify\nreplace: cn\ncn: x\n")
    assert refused.returncode == 50  # insufficientAccess


def test_user_changes_his_own_password_and_policy_applies(slapd: SlapdInstance) -> None:
    me = add_person(slapd, unique("pw"))
    weak = slapd.ldap("ldappasswd", "-D", me, "-w", PASSWORD, "-a", PASSWORD, "-s", "short",
                      me, bind="none", check=False)
    assert "Constraint violation (19)" in weak.stdout and "quality" in weak.stdout
    slapd.ldap("ldappasswd", "-D", me, "-w", PASSWORD, "-a", PASSWORD, "-s", "New-Horse-77",
               me, bind="none")
    assert slapd.ldap("ldapwhoami", "-D", me, "-w", "New-Horse-77", bind="none").returncode == 0


def test_uid_and_mail_are_unique_across_people(slapd: SlapdInstance) -> None:
    name = unique("uniq")
    add_person(slapd, name, f"mail: {name}@example.org\n")
    clash = slapd.ldap("ldapadd", check=False, stdin=(
        f"dn: cn={name},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: other{name}\ncn: x\nsn: x\n"
        f"mail: {name.upper()}@EXAMPLE.ORG\n"))
    assert clash.returncode == 19 and "non-unique" in clash.stderr


def test_memberof_is_maintained(slapd: SlapdInstance) -> None:
    dn = add_person(slapd, unique("mo"))
    slapd.ldap("ldapmodify", stdin=(
        f"dn: cn=staff,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\n"
        f"member: {dn}\n"))
    shown = slapd.ldap("ldapsearch", "-LLL", "-b", dn, "-s", "base", "memberOf").stdout
    assert "memberOf: cn=staff,ou=groups,dc=example,dc=org" in shown


def test_service_account_is_not_the_root_dn(slapd: SlapdInstance) -> None:
    assert slapd.service_dn != slapd.root_dn
    short = slapd.ldap("ldapadd", check=False, stdin=(
        f"dn: uid={unique('weak')},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: w\ncn: w\nsn: w\n"
        "userPassword: abc\n"))
    assert short.returncode == 19  # ppolicy applies to the service: it is no root


def test_email_code_is_the_services_alone(slapd: SlapdInstance) -> None:
    """A user who could read his code's hash could find the six digits offline."""
    me = add_person(slapd, unique("code"), (
        "objectClass: userdirPerson\nuserdirEmailVerified: FALSE\n"
        "userdirEmailCodeHash: salt$0123abcd\nuserdirEmailCodeExpiry: 20300101000000Z\n"
        "userdirEmailCodeAttempts: 0\n"))
    own = slapd.ldap("ldapsearch", "-D", me, "-w", PASSWORD, "-LLL", "-b", me, "-s", "base",
                     "*", bind="none").stdout
    assert "userdirEmailVerified: FALSE" in own
    assert "userdirEmailCode" not in own
    probe = slapd.ldap("ldapsearch", "-D", me, "-w", PASSWORD, "-LLL", "-b", me, "-s", "base",
                       "(userdirEmailCodeHash=salt$0123abcd)", "1.1", bind="none").stdout
    assert probe.strip() == ""  # not even as a search filter (an oracle)
    seen = slapd.ldap("ldapsearch", "-LLL", "-b", me, "-s", "base", "*").stdout
    assert "userdirEmailCodeHash: salt$0123abcd" in seen and "userdirEmailCodeAttempts: 0" in seen


def test_service_secrets_bind_cheaply_and_the_decoy_costs_what_a_password_costs(
        slapd: SlapdInstance) -> None:
    """The service identities' passwords are long random secrets, stored
    {SSHA}: a new connection (each sorted listing after a write opens one)
    binds in a millisecond instead of an argon2 verification. The decoy that
    failed logins of unknown users bind keeps argon2, as users' passwords."""
    base = "dc=example,dc=org"
    for dn, scheme in ((f"cn=userdir,ou=services,{base}", b"{SSHA}"),
                       (f"cn=importer,ou=services,{base}", b"{SSHA}"),
                       (f"cn=decoy,ou=services,{base}", b"{ARGON2}$argon2")):
        stored = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base",
                            "userPassword", bind="root").stdout
        value = base64.b64decode(stored.split("userPassword::")[1].split()[0])
        assert value.startswith(scheme), (dn, value[:12])
