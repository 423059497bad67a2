"""The embedded slapd: first-start initialisation, restarts, secrets, stopping."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli, embedded
from tests.conftest import BASE_DN, SlapdInstance, free_port, start_slapd


def test_initialise_creates_secrets_readable_only_by_owner(slapd: SlapdInstance) -> None:
    layout = slapd.layout
    for secret in (layout.root_password_file, layout.service_password_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(secret.read_text()) >= 24 and "\n" not in secret.read_text()
    assert stat.S_IMODE(layout.data_dir.stat().st_mode) == 0o700


def test_initialise_is_done_once(slapd: SlapdInstance) -> None:
    before = slapd.service_password
    assert embedded.initialise(slapd.layout.data_dir, BASE_DN, ["user", "admin"]) is False
    assert slapd.service_password == before


def test_data_survives_a_restart(tmp_path: Path) -> None:
    instance = start_slapd(tmp_path / "d")
    try:
        instance.ldap("ldapadd", stdin=(
            "dn: cn=keepme,ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\n"
            "cn: keepme\nmember: cn=nobody,dc=example,dc=org\n"))
    finally:
        instance.process.stop()
    assert instance.process.process is None
    again = SlapdInstance(tmp_path / "d", free_port())
    again.process.start()
    try:
        found = again.ldap("ldapsearch", "-b", "ou=groups,dc=example,dc=org", "(cn=keepme)", "dn")
        assert "cn=keepme,ou=groups" in found.stdout
    finally:
        again.process.stop()


def test_an_interrupted_initialisation_is_redone(tmp_path: Path) -> None:
    data = tmp_path / "half"
    (data / "slapd.d").mkdir(parents=True)
    (data / "slapd.d" / "leftover").write_text("x")
    assert embedded.initialise(data, BASE_DN, ["user", "admin"]) is True
    assert not (data / "slapd.d" / "leftover").exists()


def test_missing_slapd_names_the_debian_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(embedded, "SBIN", tmp_path)
    monkeypatch.setenv("USERDIR_EMBEDDED__DATA_DIR", str(tmp_path / "data"))
    assert cli.main(["serve"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "apt-get install slapd ldap-utils" in error


def test_port_in_use_is_reported(slapd: SlapdInstance) -> None:
    other = embedded.Slapd(slapd.layout.data_dir, slapd.process.port)
    with pytest.raises(embedded.SlapdError, match="already in use"):
        other.start()


def test_base_dn_must_be_supported() -> None:
    with pytest.raises(embedded.SlapdError, match="base DN"):
        embedded.suffix_entry("cn=nope,dc=example,dc=org")
    assert "objectClass: organization" in embedded.suffix_entry("o=Acme")


def test_the_image_entrypoint_stops_on_sigterm(tmp_path: Path) -> None:
    """`docker stop` sends SIGTERM to `python3 -m app.embedded run`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.embedded", "run", "--data-dir", str(tmp_path / "d"),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening" in line:
                break
        pid = int((tmp_path / "d" / "run" / "slapd.pid").read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        process.kill()
