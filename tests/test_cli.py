"""`userdir serve` as a newcomer runs it: embedded slapd, bootstrap, HTTP, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def start(data_dir: Path, http_port: int, ldap_port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "USERDIR_EMBEDDED__DATA_DIR": str(data_dir),
           "USERDIR_EMBEDDED__PORT": str(ldap_port), "USERDIR_HTTP__PORT": str(http_port)}
    env.pop("USERDIR_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_healthy(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("userdir serve did not become healthy")


def interrupt(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    return output


def slapd_pid(data_dir: Path) -> int:
    return int((data_dir / "run" / "slapd.pid").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in \
        Path(f"/proc/{pid}/status").read_text().lower()


def test_serve_runs_stops_and_keeps_data(tmp_path: Path) -> None:
    data, http_port, ldap_port = tmp_path / "data", free_port(), free_port()
    process = start(data, http_port, ldap_port)
    try:
        wait_healthy(process, http_port)
        pid = slapd_pid(data)
        tree = subprocess.run(
            ["ldapsearch", "-x", "-LLL", "-H", f"ldap://127.0.0.1:{ldap_port}",
             "-D", "cn=userdir,ou=services,dc=example,dc=org",
             "-y", str(data / "service.password"), "-b", "dc=example,dc=org", "dn"],
            capture_output=True, text=True, check=True).stdout
        assert "dn: ou=people,dc=example,dc=org" in tree
        assert "dn: cn=admin,ou=groups,dc=example,dc=org" in tree
    finally:
        output = interrupt(process)
    assert process.returncode in (0, 130), output
    assert not alive(pid), "slapd still runs after Ctrl-C"
    password = re.search(r"bootstrap admin 'admin' created; password: (\S+)", output)
    assert password, output

    process = start(data, http_port, ldap_port)
    try:
        wait_healthy(process, http_port)
        pid = slapd_pid(data)
        token = httpx.post(f"http://127.0.0.1:{http_port}/auth/token",
                           json={"username": "admin", "password": password.group(1)})
        assert token.status_code == 200  # the same directory, the same admin
    finally:
        output = interrupt(process)
    assert "password:" not in output  # shown once only
    assert not alive(pid)
