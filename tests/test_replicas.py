"""Read replicas (README "Read replicas"): one provider and two delta-syncrepl consumers
made from ldif/, the API reading from the consumers and writing to the provider.

One provider and its consumers for the module (tests/replicas_support.py);
the in-process API reads from the first consumer. The provider is stopped
and started again in one test; the module's last test runs two API
processes, one on each consumer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import ldap3
import pytest
from prometheus_client import REGISTRY

from app import cli
from app.api.edge import SAFE_METHODS
from app.auth import SigningKey
from app.bulkhead import current_client
from app.config import Config
from app.directory.freshness import covers
from app.directory.replicas import ReplicatedPool
from app.domain import NewUser, Profile, User, UserQuery
from app.requests import Origin, current_origin
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    PASSWORD,
    SlapdInstance,
    free_port,
    make_config,
    released_together,
    run,
    serving,
    unique,
)
from tests.replicas_support import (
    api_processes,
    caught_up,
    connect,
    entry,
    people,
    restart,
    start_consumer,
    start_provider,
    stop,
    wait_until,
)
from tests.test_dialects_hostile import DIALECTS, bearer
from tests.test_provisioning import STOCK_CONFIG

T = TypeVar("T")
TYPE_GROUPS = {f"cn={t},ou=groups,{BASE_DN}" for t in ("user", "staff", "admin")}
OPERATION_TIMEOUT = 2.0
SLACK = 2.0  # what HTTP and the test's own threads may add to the operation timeout


@dataclass
class Cluster:
    provider: SlapdInstance
    consumers: list[SlapdInstance]
    base: Path

    def synced(self) -> None:
        """Wait until every consumer holds what the provider holds now."""
        for consumer in self.consumers:
            wait_until(lambda c=consumer: caught_up(c, self.provider), "replication")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("replicas")
    provider = start_provider(base / "provider")
    consumers: list[SlapdInstance] = []
    try:
        consumers += [start_consumer(base / f"consumer-{n}", provider) for n in (1, 2)]
        yield Cluster(provider, consumers, base)
    finally:
        for instance in (*consumers, provider):
            stop(instance)


def replica_config(cluster: Cluster, data: str, consumer: int = 0, **ldap: Any) -> Config:
    return make_config(cluster.provider, cluster.base / data, ldap={
        "read_urls": cluster.consumers[consumer].url,
        "operation_timeout": OPERATION_TIMEOUT, **ldap})


@pytest.fixture(scope="module")
def config(cluster: Cluster) -> Config:
    config = replica_config(cluster, "api")
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    finally:
        runtime.close()
    return config


@pytest.fixture
def runtime(config: Config) -> Iterator[Runtime]:
    built = Runtime.build(config)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def url(config: Config) -> Iterator[str]:
    with serving(config) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def admin(url: str) -> dict[str, str]:
    return bearer(DIALECTS[0].login(url, ADMIN, ADMIN_PASSWORD))


def as_client(client: str, call: Callable[[], Any]) -> Any:
    """Run a service coroutine as a request of `client` would (its address)."""
    async def scoped() -> Any:
        current_client.set(client)
        return await call()
    return run(scoped())


def pool_of(runtime: Runtime) -> ReplicatedPool:
    pool = runtime.directory.pool
    assert isinstance(pool, ReplicatedPool)
    return pool


def served_by(runtime: Runtime, call: Callable[[], T]) -> tuple[T, set[str]]:
    """What `call` returns, and which servers' searches went up meanwhile."""
    before = dict(pool_of(runtime).searches)
    result = call()
    after = pool_of(runtime).searches
    return result, {u for u in after if after[u] > before[u]}


def create(runtime: Runtime, client: str, username: str | None = None) -> User:
    new = NewUser(username=username or unique("r"), password=PASSWORD,
                  profile=Profile(email=f"{username or unique('m')}@example.org"))
    user: User = as_client(client, lambda: runtime.service.create_user(new))
    return user


# --- the consumer's copy ----------------------------------------------------


def test_a_consumer_copies_everything_and_keeps_its_own_memberof(
        cluster: Cluster, runtime: Runtime) -> None:
    user = create(runtime, "192.0.2.1")
    as_client("192.0.2.1", lambda: runtime.service.set_account_type(user.username, "staff"))
    cluster.synced()
    dn = f"uid={user.username},ou=people,{BASE_DN}"
    for consumer in cluster.consumers:
        copy = entry(consumer, dn, "memberOf", "uidNumber", "mail")
        assert copy is not None
        # memberof runs on each consumer: delta-syncrepl replays the group changes only
        assert copy["memberOf"] == [f"cn=staff,ou=groups,{BASE_DN}"]
        assert copy["uidNumber"] == user.id
        staff = entry(consumer, f"cn=staff,ou=groups,{BASE_DN}", "member")
        user_group = entry(consumer, f"cn=user,ou=groups,{BASE_DN}", "member")
        assert staff is not None and user_group is not None
        assert dn in staff["member"] and dn not in user_group["member"]


def test_the_replicator_reads_what_a_bind_needs_and_is_not_the_root(
        cluster: Cluster, runtime: Runtime) -> None:
    user = create(runtime, "192.0.2.2")
    cluster.synced()
    # a user binds on a consumer: his hash was copied, the service still reads none
    consumer = cluster.consumers[0]
    dn = f"uid={user.username},ou=people,{BASE_DN}"
    assert consumer.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none").returncode == 0
    seen = consumer.ldap("ldapsearch", "-b", dn, "-s", "base", "userPassword").stdout
    assert "userPassword" not in seen.split("# requesting")[1].split("\n", 1)[1]
    config = (consumer.layout.config_dir / "cn=config" / "olcDatabase={1}mdb.ldif").read_text()
    config = config.replace("\n ", "")  # unfolded
    assert 'binddn="cn=replicator,ou=services,dc=example,dc=org"' in config
    assert "cn=root" not in config.split("olcSyncrepl")[1]


def test_a_write_sent_to_a_consumer_is_referred_to_the_provider(
        cluster: Cluster, runtime: Runtime) -> None:
    """LDAP tools may write to a consumer: they are referred to the provider
    and make the change there as themselves (ldap3 follows by default)."""
    user = create(runtime, "192.0.2.3")
    cluster.synced()
    dn = f"uid={user.username},ou=people,{BASE_DN}"
    change = f"dn: {dn}\nchangetype: modify\nreplace: description\ndescription: via a consumer\n"
    referred = cluster.consumers[0].ldap("ldapmodify", stdin=change, check=False)
    assert referred.returncode == 10 and f"{cluster.provider.url}/{dn}" in referred.stderr
    conn = connect(cluster.consumers[0])
    try:
        conn.modify(dn, {"description": [(ldap3.MODIFY_REPLACE, ["via a consumer"])]})
        assert conn.result["result"] == 0, conn.result
    finally:
        conn.unbind()
    found = entry(cluster.provider, dn, "description", "modifiersName")
    assert found is not None and found["description"] == ["via a consumer"]
    assert found["modifiersName"] == cluster.provider.service_dn


# --- where reads go ---------------------------------------------------------


def test_reads_go_to_the_consumer_and_writes_to_the_provider(
        cluster: Cluster, runtime: Runtime) -> None:
    user = create(runtime, "192.0.2.4")
    cluster.synced()
    consumer, provider = cluster.consumers[0].url, cluster.provider.url
    wait_until(lambda: pool_of(runtime).freshness.lag(pool_of(runtime).replicas[0]) == 0,
               "the watcher to see the consumer")
    found, servers = served_by(runtime, lambda: as_client(
        "192.0.2.40", lambda: runtime.service.get_user(user.username)))
    assert found.id == user.id and servers == {consumer}
    page, servers = served_by(runtime, lambda: as_client(
        "192.0.2.40", lambda: runtime.service.list_users(UserQuery(limit=5))))
    assert page.total >= 1 and servers == {consumer}
    _, servers = served_by(runtime, lambda: create(runtime, "192.0.2.41"))
    assert servers == {provider}  # uniqueness checks and the counter read the provider


def test_a_request_that_may_change_something_reads_only_the_provider(
        cluster: Cluster, runtime: Runtime) -> None:
    """A POST's caller lookup (his rights: a demotion, a disabling) is read
    from the provider, never from a consumer that may lag; a GET's may be."""
    user = create(runtime, "192.0.2.60")
    cluster.synced()
    wait_until(lambda: pool_of(runtime).freshness.lag(pool_of(runtime).replicas[0]) == 0,
               "the watcher to see the consumer")

    def read_during(method: str) -> User:
        async def call() -> User:
            current_client.set("192.0.2.61")
            current_origin.set(Origin("r", "192.0.2.61",
                                      changes=lambda: method not in SAFE_METHODS))
            found: User = await runtime.service.get_user(user.username)
            return found
        return run(call())

    for method, server in (("GET", cluster.consumers[0].url), ("POST", cluster.provider.url),
                           ("DELETE", cluster.provider.url), ("HEAD", cluster.consumers[0].url)):
        found, servers = served_by(runtime, lambda m=method: read_during(m))
        assert found.id == user.id and servers == {server}, method
    # Reading the provider for freshness is no write: it leaves no mark
    # that would hold the client's later reads on the provider.
    assert pool_of(runtime)._marks.get("192.0.2.61") is None


@contextlib.contextmanager
def paused_replication(consumer: SlapdInstance) -> Iterator[None]:
    """The consumer keeps answering but stops copying (its olcSyncrepl taken
    away over ldapi, as the Unix user who owns its cn=config) until the block ends."""
    database = "olcDatabase={1}mdb,cn=config"
    shown = subprocess.run(["ldapsearch", "-Q", "-LLL", "-o", "ldif-wrap=no", "-Y", "EXTERNAL",
                            "-H", consumer.layout.ldapi_url, "-b", database, "-s", "base",
                            "olcSyncrepl"], capture_output=True, text=True, check=True).stdout
    value = next(line for line in shown.splitlines() if line.startswith("olcSyncrepl:"))

    def modify(change: str) -> None:
        subprocess.run(["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", consumer.layout.ldapi_url],
                       input=f"dn: {database}\nchangetype: modify\n{change}\n",
                       capture_output=True, text=True, check=True)

    modify("delete: olcSyncrepl")
    try:
        yield
    finally:
        modify(f"add: olcSyncrepl\n{value}")


def test_a_client_reads_its_own_writes(cluster: Cluster, runtime: Runtime) -> None:
    """Right after a write the consumer may not hold it yet: the writer's
    reads go to the provider until the consumer is seen to hold it; other
    clients read from the consumer all along."""
    provider = cluster.provider.url
    fallbacks = 0
    for round_number in range(20):
        client = f"198.51.100.{round_number + 1}"
        user = create(runtime, client)
        found, servers = served_by(runtime, lambda c=client, u=user: as_client(
            c, lambda: runtime.service.get_user(u.username)))
        assert found.id == user.id, round_number
        changed = as_client(client, lambda u=user: runtime.service.set_account_type(
            u.username, "staff"))
        assert changed.account_type == "staff"
        again = as_client(client, lambda u=user: runtime.service.get_user(u.username))
        assert again.account_type == "staff", round_number  # never the value before
        fallbacks += servers == {provider}
    # The consumer holds a write within milliseconds, its watcher sees it
    # within a quarter of max_lag: the writer's next read meets the provider.
    assert fallbacks > 0


def seen_lag(url: str) -> float | None:
    return REGISTRY.get_sample_value("userdir_replica_lag_seconds", {"replica": url})


@pytest.mark.usefixtures("config")  # the admin it reads is made there
def test_a_consumer_that_is_behind_or_down_is_skipped(cluster: Cluster) -> None:
    """...and /metrics says so (userdir_replica_lag_seconds, userdir_replica_up)."""
    behind = replica_config(cluster, "api-behind", max_lag=0.2)
    runtime = Runtime.build(behind)
    try:
        pool = pool_of(runtime)
        replica = pool.replicas[0]
        wait_until(lambda: pool.freshness.lag(replica) == 0, "the watcher to see the consumer")
        consumer = cluster.consumers[0]
        with paused_replication(consumer):  # it answers, but holds nothing new
            create(runtime, "192.0.2.50")
            wait_until(lambda: (pool.freshness.lag(replica) or 0.0) > 0.2,
                       "the consumer to fall behind")
            wait_until(lambda: (seen_lag(consumer.url) or 0.0) > 0.2, "/metrics to show the lag")
            user, servers = served_by(runtime, lambda: as_client(
                "192.0.2.51", lambda: runtime.service.get_user(ADMIN)))
            assert servers == {cluster.provider.url} and user.username == ADMIN
        cluster.synced()
        wait_until(lambda: pool.freshness.lag(replica) == 0, "the consumer to catch up")
        stop(consumer)
        try:
            wait_until(lambda: pool.freshness.lag(replica) is None, "the consumer to be seen down")
            wait_until(lambda: REGISTRY.get_sample_value(
                "userdir_replica_up", {"replica": consumer.url}) == 0, "/metrics to show it down")
            user, servers = served_by(runtime, lambda: as_client(
                "192.0.2.51", lambda: runtime.service.get_user(ADMIN)))
            assert servers == {cluster.provider.url} and user.username == ADMIN
        finally:
            restart(consumer)
        cluster.synced()
        wait_until(lambda: pool.freshness.lag(replica) == 0, "the consumer to be back")
        wait_until(lambda: seen_lag(consumer.url) == 0, "/metrics to show it back")
        assert REGISTRY.get_sample_value("userdir_replica_up", {"replica": consumer.url}) == 1
        _, servers = served_by(runtime, lambda: as_client(
            "192.0.2.51", lambda: runtime.service.get_user(ADMIN)))
        assert servers == {consumer.url}
    finally:
        runtime.close()


# --- lockouts ---------------------------------------------------------------


def test_failed_binds_on_a_consumer_lock_the_account_everywhere(
        cluster: Cluster, runtime: Runtime, url: str) -> None:
    user = create(runtime, "192.0.2.5")
    cluster.synced()
    dn = f"uid={user.username},ou=people,{BASE_DN}"
    consumer = cluster.consumers[0]
    for _ in range(20):  # the default policy's pwdMaxFailure
        assert consumer.ldap("ldapwhoami", "-D", dn, "-w", "Wrong-Horse-0", bind="none",
                             check=False).returncode == 49
    locked = entry(cluster.provider, dn, "pwdAccountLockedTime", "pwdFailureTime")
    assert locked is not None and locked["pwdAccountLockedTime"]  # counted on the provider
    cluster.synced()
    for instance in (cluster.provider, *cluster.consumers):
        refused = instance.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none", check=False)
        assert refused.returncode == 49, instance.url
    login = httpx.post(f"{url}/auth/token", json={"username": user.username,
                                                  "password": PASSWORD})
    assert login.status_code == 401


def test_failed_logins_through_the_api_count_on_every_consumer(
        cluster: Cluster, runtime: Runtime, url: str) -> None:
    user = create(runtime, "192.0.2.6")
    for _ in range(3):
        refused = httpx.post(f"{url}/auth/token", json={"username": user.username,
                                                        "password": "Wrong-Horse-0"})
        assert refused.status_code == 401
    cluster.synced()
    dn = f"uid={user.username},ou=people,{BASE_DN}"
    for consumer in cluster.consumers:
        copy = entry(consumer, dn, "pwdFailureTime")
        assert copy is not None and len(copy["pwdFailureTime"]) == 3


# --- the provider away ------------------------------------------------------


def test_without_the_provider_reads_carry_on_and_writes_fail_fast_in_each_format(
        cluster: Cluster, runtime: Runtime, url: str, admin: dict[str, str]) -> None:
    names = {d.name: unique("away") for d in DIALECTS}
    plain = create(runtime, "192.0.2.7")  # FitTrackee has no create: it makes him admin

    def fittrackee_write() -> httpx.Response:
        return httpx.patch(f"{url}/api/users/{plain.username}", headers=admin, timeout=30,
                           json={"admin": True})

    cluster.synced()
    stop(cluster.provider)
    try:
        for dialect in DIALECTS:
            read = dialect.lookups[0](url, admin, ADMIN) if dialect.name == "fittrackee" \
                else dialect.protected(url, admin)
            assert read.status_code == 200, (dialect.name, read.text)
            started = time.monotonic()
            write = dialect.create(url, admin, names[dialect.name]) if dialect.create \
                else fittrackee_write()
            elapsed = time.monotonic() - started
            assert write.status_code == 503, (dialect.name, write.text)
            assert dialect.error_shape(write.json()), (dialect.name, write.text)
            assert write.headers.get("retry-after")
            assert elapsed <= OPERATION_TIMEOUT + SLACK, (dialect.name, elapsed)
        assert httpx.get(f"{url}/health").status_code == 503
        # a password is checked by a bind on the provider: no login meanwhile
        login = httpx.post(f"{url}/auth/token", json={"username": ADMIN,
                                                      "password": ADMIN_PASSWORD})
        assert login.status_code == 503, login.text
    finally:
        restart(cluster.provider)
    # back by itself: no restart of the API
    native = DIALECTS[0]
    assert native.create is not None
    wait_until(lambda: native.create(url, admin, unique("back")).status_code == 201,
               "writes to come back")
    cluster.synced()


def test_without_the_provider_a_writer_reads_what_a_consumer_holds(
        cluster: Cluster, runtime: Runtime) -> None:
    """Read-your-writes cannot be kept without the provider: the reads of a
    client whose last write no consumer holds go to a consumer rather than
    fail, from the first read after the provider went away (found by the
    Docker cluster's test: a client who had just logged in got 503s)."""
    pool = pool_of(runtime)
    consumer = cluster.consumers[0]
    wait_until(lambda: pool.freshness.lag(pool.replicas[0]) == 0, "the watcher to see the consumer")
    with paused_replication(consumer):
        create(runtime, "192.0.2.60")  # his mark: a change the consumer lacks
        as_client("192.0.2.60", lambda: runtime.service.get_user(ADMIN))  # pooled, then stale
        stop(cluster.provider)
        try:
            user, servers = served_by(runtime, lambda: as_client(
                "192.0.2.60", lambda: runtime.service.get_user(ADMIN)))
            assert user.username == ADMIN and consumer.url in servers
        finally:
            restart(cluster.provider)
    cluster.synced()


# --- two API processes on two consumers -------------------------------------


def _create(url: str, headers: dict[str, str], username: str,
            email: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.post(f"{url}/people", headers=headers, timeout=60, json={
        "username": username, "password": PASSWORD, "email": email})


def _token(url: str, username: str, password: str = PASSWORD) -> dict[str, str]:
    return bearer(DIALECTS[0].login(url, username, password))


def test_two_api_processes_on_two_consumers_keep_every_invariant(
        cluster: Cluster, config: Config, tmp_path: Path) -> None:
    key = tmp_path / "jwt.pem"
    SigningKey.load_or_create(key)  # one key for both, as the cluster compose file shares it
    environ = {name: value for name, value in {
        "USERDIR_LDAP__URL": cluster.provider.url, "USERDIR_LDAP__BASE_DN": BASE_DN,
        "USERDIR_LDAP__BIND_PASSWORD": cluster.provider.service_password,
        "USERDIR_LDAP__POOL_SIZE": "8", "USERDIR_LDAP__QUEUE_LIMIT": "1000",
        "USERDIR_AUTH__SIGNING_KEY_FILE": str(key),
        "USERDIR_BOOTSTRAP__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "USERDIR_LOG__LEVEL": "warning"}.items()}
    environs = [{**environ, "USERDIR_LDAP__READ_URLS": consumer.url,
                 "USERDIR_EMBEDDED__DATA_DIR": str(tmp_path / f"api-{n}")}
                for n, consumer in enumerate(cluster.consumers)]
    with api_processes(environs, [tmp_path / f"api-{n}.log" for n in range(2)]) as apis:
        admin = _token(apis[0].url, ADMIN, ADMIN_PASSWORD)
        assert httpx.get(f"{apis[1].url}/people/{ADMIN}", headers=admin).status_code == 200

        # creates at once through both: distinct ones, and names and emails both ask for
        calls, distinct = [], [unique("two") for _ in range(20)]
        for i, name in enumerate(distinct):
            calls.append(_create(apis[i % 2].url, admin, name, f"{name}@example.org"))
        contested = [unique("both") for _ in range(4)]
        for name in contested:
            calls += [_create(api.url, admin, name, f"{unique('e')}@example.org") for api in apis]
        emails = [f"{unique('shared')}@example.org" for _ in range(4)]
        for email in emails:
            calls += [_create(api.url, admin, unique("mail"), email) for api in apis]
        statuses = Counter(r.status_code for r in released_together(calls))
        assert statuses == {201: 20 + 4 + 4, 409: 8}, statuses

        # two admins demoting each other at once, each through his own API process
        for round_number in range(3):
            _demote_each_other(cluster, apis[0].url, apis[1].url, admin, round_number)
    cluster.synced()
    _check_invariants(cluster)


def _demote_each_other(cluster: Cluster, first: str, second: str, admin: dict[str, str],
                       round_number: int) -> None:
    """a (through the first process) and b (through the second), the only
    admins, demote each other at the same moment: one of them stays admin."""
    a, b = unique(f"ra{round_number}x"), unique(f"rb{round_number}x")
    for name in (a, b):
        assert _create(first, admin, name, f"{name}@example.org")().status_code == 201
        assert httpx.put(f"{first}/people/{name}/type", headers=admin,
                         json={"account_type": "admin"}).status_code == 200
    tokens = {a: _token(first, a), b: _token(second, b)}
    for other in _admins(cluster) - {a, b}:
        assert httpx.put(f"{first}/people/{other}/type", headers=tokens[a],
                         json={"account_type": "user"}).status_code == 200
    cluster.synced()  # each process sees both as admins: the race is the provider's to settle
    responses = released_together([
        lambda: httpx.put(f"{first}/people/{b}/type", headers=tokens[a], timeout=60,
                          json={"account_type": "user"}),
        lambda: httpx.put(f"{second}/people/{a}/type", headers=tokens[b], timeout=60,
                          json={"account_type": "user"})])
    statuses = sorted(r.status_code for r in responses)
    admins = _admins(cluster)
    assert len(admins) == 1 and admins <= {a, b}, (round_number, statuses, admins)
    # one succeeded; the other was refused as the last admin (409), or came
    # second and was no longer admin (403)
    assert statuses[0] == 200 and statuses[1] in (403, 409), statuses
    survivor = next(iter(admins))
    assert httpx.put(f"{first}/people/{ADMIN}/type", headers=tokens[survivor],
                     json={"account_type": "admin"}).status_code == 200


def _admins(cluster: Cluster) -> set[str]:
    """The admins, as the provider holds them."""
    group = entry(cluster.provider, f"cn=admin,ou=groups,{BASE_DN}", "member")
    assert group is not None
    return {dn.split(",")[0].split("=", 1)[1] for dn in group["member"]
            if dn.startswith("uid=")}


def _check_invariants(cluster: Cluster) -> None:
    """Unique names, emails and ids; one account type each; an admin left:
    on the provider, and the same on every consumer."""
    copies = []
    for instance in (cluster.provider, *cluster.consumers):
        found = people(instance, "uid", "mail", "uidNumber", "memberOf")
        names = [p["uid"][0].lower() for p in found]
        mails = [m.lower() for p in found for m in p.get("mail", [])]
        numbers = [p["uidNumber"] for p in found]
        assert len(names) == len(set(names)) and len(mails) == len(set(mails)), instance.url
        assert len(numbers) == len(set(numbers)), instance.url
        for person in found:
            assert len(TYPE_GROUPS & set(person["memberOf"])) == 1, (instance.url, person)
        assert any(f"cn=admin,ou=groups,{BASE_DN}" in p["memberOf"] for p in found)
        copies.append(sorted((p["uid"][0], p["uidNumber"], sorted(p["memberOf"]))
                             for p in found))
    assert all(copy == copies[0] for copy in copies)


def test_the_same_ldif_makes_a_consumer_of_a_stock_server(
        cluster: Cluster, config: Config, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`userdir init --consumer-of`: an existing slapd (core schema and a
    cn=config admin only) becomes a read replica over LDAP."""
    config_dir, run_dir = tmp_path / "slapd.d", tmp_path / "run"
    config_dir.mkdir()
    run_dir.mkdir()
    (tmp_path / "db").mkdir()
    subprocess.run(["slapadd", "-n0", "-F", str(config_dir)], check=True, capture_output=True,
                   input=STOCK_CONFIG.format(run=run_dir), text=True)
    port = free_port()
    process = subprocess.Popen(["/usr/sbin/slapd", "-F", str(config_dir), "-h",
                                f"ldap://127.0.0.1:{port}/", "-d", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stock = SlapdInstance(cluster.provider.layout.data_dir, port)  # the provider's secrets
        wait_until(lambda: stock.ldap("ldapsearch", "-b", "", "-s", "base", bind="none",
                                      check=False).returncode == 0, "the stock slapd")
        (tmp_path / "config.password").write_text("config-secret\n")
        replicator = cluster.provider.layout.replicator_password_file
        env = {"USERDIR_LDAP__URL": stock.url, "USERDIR_LDAP__BIND_PASSWORD": "x",
               "USERDIR_EMBEDDED__DATA_DIR": str(tmp_path / "data")}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code = cli.main(["init", "--config-dn", "cn=admin,cn=config",
                             "--config-password-file", str(tmp_path / "config.password"),
                             "--db-directory", str(tmp_path / "db"),
                             "--consumer-of", cluster.provider.url,
                             "--replicator-password-file", str(replicator)])
        assert code == 0, capsys.readouterr()
        wait_until(lambda: caught_up(stock, cluster.provider), "the new consumer's copy")
        admin = entry(stock, f"uid={ADMIN},ou=people,{BASE_DN}", "memberOf")
        assert admin is not None and f"cn=admin,ou=groups,{BASE_DN}" in admin["memberOf"]
        assert not (tmp_path / "data" / "importer.password").exists()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)


def test_a_clients_mark_only_moves_forward(runtime: Runtime) -> None:
    """Two writes of one client finishing out of order: the later mark read
    may be the older; what the client must read is the newest of both."""
    pool = pool_of(runtime)
    ahead = {"000": "29991231235959.999999Z#000000#000#000000"}
    pool._marks.put("192.0.2.70", dict(ahead))
    pool._remember("192.0.2.70")
    mark = pool._marks.get("192.0.2.70")
    assert mark is not None and mark["000"] == ahead["000"]


def test_only_the_directory_itself_is_read_from_consumers(runtime: Runtime) -> None:
    pool = pool_of(runtime)
    wait_until(lambda: pool.freshness.lag(pool.replicas[0]) == 0, "the watcher to see the consumer")
    with pool.routing(reads=True, client="192.0.2.71"):
        assert pool._choose(f"ou=people,{BASE_DN}") is not None
        assert pool._choose(BASE_DN) is not None
        assert pool._choose("dc=myexample,dc=org") is None
        assert pool._choose("ou=people,dc=myexample,dc=org") is None
        assert pool._choose("cn=accesslog") is None


def test_covers_compares_csns_per_server() -> None:
    have = {"000": "20260101000000.000002Z#000000#000#000000"}
    assert covers(have, {"000": "20260101000000.000001Z#000000#000#000000"})
    assert not covers(have, {"000": "20260101000000.000003Z#000000#000#000000"})
    assert not covers(have, {"001": "20250101000000.000000Z#000000#001#000000"})
    assert covers(have, {})


def test_which_requests_may_change_something() -> None:
    """Unsafe methods, but for the searches sent as POSTs (ufdl's list, SCIM's .search)."""
    from types import SimpleNamespace

    from app.api.edge import _may_change
    from app.api.ufdl import list_users
    scim = SimpleNamespace(opt={"reads_only": lambda p: p.rstrip("/").endswith("/.search")})
    assert not _may_change({"method": "GET"})
    assert not _may_change({"method": "HEAD"})
    assert _may_change({"method": "POST"}) and _may_change({"method": "DELETE"})
    assert not _may_change({"method": "POST", "route_handler": list_users})
    assert not _may_change({"method": "POST", "route_handler": scim,
                            "raw_path": b"/scim/v2/Users/.search"})
    assert _may_change({"method": "POST", "route_handler": scim, "raw_path": b"/scim/v2/Users"})
