"""What the SCIM tests share: a directory that hashes quickly, a served app, an admin token."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from app import embedded
from app.config import Config
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    SlapdInstance,
    free_port,
    make_config,
    run,
    serving,
)

SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USERDIR = "urn:userdir:params:scim:schemas:extension:2.0:User"


@contextmanager
def quick_slapd(where: Path) -> Iterator[SlapdInstance]:
    """A slapd from ldif/ as shipped, but hashing passwords with {SSHA}, not
    argon2 (~0.1 s a user on this machine): the SCIM suites create hundreds
    of users and test what SCIM does, not the hash (tests/test_scim.py checks
    that one on the argon2 directory)."""
    ldif = where / "ldif"
    shutil.copytree(embedded.find_ldif_dir(), ldif)
    config = ldif / "config.ldif"
    config.write_text(config.read_text().replace("olcPasswordHash: {ARGON2}",
                                                 "olcPasswordHash: {SSHA}"))
    embedded.initialise(where / "data", BASE_DN, ["user", "staff", "admin"], ldif_dir=ldif)
    instance = SlapdInstance(where / "data", free_port())
    instance.process.start()
    try:
        yield instance
    finally:
        instance.process.stop()


def bootstrapped_config(slapd: SlapdInstance, data_dir: Path, **sections: Any) -> Config:
    config = make_config(slapd, data_dir, **sections)
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    finally:
        runtime.close()
    return config


@contextmanager
def scim_client(config: Config) -> Iterator[httpx.Client]:
    """An HTTP client of /scim/v2 on the served app, with an admin's token."""
    with serving(config) as url:
        token = httpx.post(f"{url}/auth/token", json={
            "username": ADMIN, "password": ADMIN_PASSWORD}).json()["access_token"]
        with httpx.Client(base_url=f"{url}/scim/v2", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
