"""Config: TOML file, USERDIR_<SECTION>__<KEY> overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Config, ConfigError, load_config


def test_defaults_without_file_or_environment() -> None:
    config = load_config(None, {})
    assert config.http.host == "127.0.0.1" and config.http.port == 8000
    assert config.ldap.embedded and config.embedded.port == 3389
    assert config.ldap_url == "ldap://127.0.0.1:3389"
    assert config.users.account_types == ["user", "staff", "admin"]
    assert config.bind_dn == "cn=userdir,ou=services,dc=example,dc=org"


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "userdir.toml"
    path.write_text('[http]\nport = 9000\n[users]\naccount_types = ["member", "admin"]\n'
                    'default_account_type = "member"\n')
    config = load_config(path, {"USERDIR_HTTP__PORT": "9100", "USERDIR_LDAP__POOL_SIZE": "8",
                                "USERDIR_LISTING__CONTEXT_TTL": "2.5"})
    assert config.http.port == 9100
    assert config.ldap.pool_size == 8
    assert config.listing.context_ttl == 2.5
    assert config.users.account_types == ["member", "admin"]


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[http]\nhost = '0.0.0.0'\n")
    assert load_config(None, {"USERDIR_CONFIG": str(path)}).http.host == "0.0.0.0"


def test_list_from_environment_is_comma_separated() -> None:
    config = load_config(None, {"USERDIR_USERS__ACCOUNT_TYPES": "user, admin"})
    assert config.users.account_types == ["user", "admin"]


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[http]\nprot = 1\n", "prot"),
        ("[htp]\nport = 1\n", "htp"),
        ("[http]\nport = 'eighty'\n", "http.port"),
        ("[http]\nport = 70000\n", "http.port"),
        ("[ldap]\npool_size = 0\n", "ldap.pool_size"),
        ("[users]\naccount_types = ['user']\n", "admin"),
        ("[users]\naccount_types = ['user', 'Admin!']\n", "users.account_types"),
        ("[users]\ndefault_account_type = 'staff2'\n", "staff2"),
        ("[ldap]\nurl = 'ldap://x'\n", "bind_password"),
        ("[ldap]\nbase_dn = 'cn=x'\n", "base_dn"),
        ("[http\n", "config file"),
    ],
)
def test_bad_file_values_stop_with_the_key_named(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=needle):
        load_config(path, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USERDIR_HTTP__PORT", "eighty"),
        ("USERDIR_HTTP__NOPE", "1"),
        ("USERDIR_NOPE__PORT", "1"),
        ("USERDIR_PORT", "1"),
        ("USERDIR_LISTING__CONTEXT_TTL", "-1"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(None, {name: value})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", {})


def test_example_file_lists_every_key_with_a_comment() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    config = load_config(example, {})
    assert config == Config()  # the example shows the defaults
    text = example.read_text()
    lines = text.splitlines()
    for section in Config.__struct_fields__:
        assert f"[{section}]" in text
        for key in getattr(config, section).__struct_fields__:
            index = next((i for i, line in enumerate(lines)
                          if line.startswith(f"{key} =") or line.startswith(f"# {key} =")), None)
            assert index is not None, f"{section}.{key} missing from config.example.toml"
            assert lines[index - 1].startswith("#"), f"{section}.{key} has no comment"


def test_any_key_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret value\n")
    config = load_config(None, {"USERDIR_LDAP__BIND_PASSWORD_FILE": str(secret),
                                "USERDIR_LDAP__URL": "ldap://x"})
    assert config.ldap.bind_password == "s3cret value"
    with pytest.raises(ConfigError, match="USERDIR_LDAP__BIND_PASSWORD_FILE"):
        load_config(None, {"USERDIR_LDAP__BIND_PASSWORD_FILE": str(tmp_path / "absent")})


def test_a_key_ending_in_file_is_that_key(tmp_path: Path) -> None:
    """auth.signing_key_file is a key of its own (README and the Dockerfile
    set it so), not the file variant of a `signing_key`."""
    key = tmp_path / "shared.pem"
    config = load_config(None, {"USERDIR_AUTH__SIGNING_KEY_FILE": str(key)})
    assert config.auth.signing_key_file == str(key)
    # ... whose own file variant still works.
    pointer = tmp_path / "pointer"
    pointer.write_text(f"{key}\n")
    config = load_config(None, {"USERDIR_AUTH__SIGNING_KEY_FILE_FILE": str(pointer)})
    assert config.auth.signing_key_file == str(key)
