"""Tokens: what is refused, how SSO integrations verify them, and how logins fail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.testing import TestClient

from app.auth import Authenticator, ExpiredToken, SigningKey
from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import PASSWORD, SlapdInstance, create, run, serving, unique

Client = TestClient[Any]


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def token_for(client: Client, username: str, password: str = PASSWORD) -> str:
    response = client.post("/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def me(client: Client, token: str) -> Any:
    return client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


def claims_of(runtime: Runtime, token: str) -> dict[str, Any]:
    return runtime.auth.decode(token)


def forged(runtime: Runtime, claims: dict[str, Any], key: Any = None,
           algorithm: str = "ES256", headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key or runtime.auth.key.private_key, algorithm=algorithm,
                      headers=headers or {"kid": runtime.auth.key.kid})


def test_token_claims(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    token = token_for(client, user.username)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == runtime.auth.key.kid
    claims = claims_of(runtime, token)
    assert claims["sub"] == user.uuid and claims["uid"] == user.username
    assert claims["iss"] == "userdir" and claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 900 and claims["account_type"] == "user"
    assert len(claims["jti"]) >= 16


def test_expired_token(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    claims = claims_of(runtime, token_for(client, user.username))
    now = int(time.time())
    stale = forged(runtime, {**claims, "iat": now - 4000, "exp": now - 3600})
    response = me(client, stale)
    assert response.status_code == 401 and response.json()["title"] == "token expired"


def test_tampered_and_foreign_tokens(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    token = token_for(client, user.username)
    claims = claims_of(runtime, token)
    head, body, signature = token.split(".")
    other_user = create(runtime)
    swapped_body = forged(runtime, {**claims, "sub": other_user.uuid}).split(".")[1]
    attempts = {
        "bad signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "payload swapped": f"{head}.{swapped_body}.{signature}",
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "wrong key": forged(runtime, claims, key=ec.generate_private_key(ec.SECP256R1())),
        "HS256 with the public key": jwt.encode(
            claims, runtime.auth.key.jwk["x"], algorithm="HS256"),
        "no exp": forged(runtime, {k: v for k, v in claims.items() if k != "exp"}),
        "no sub": forged(runtime, {k: v for k, v in claims.items() if k != "sub"}),
        "other issuer": forged(runtime, {**claims, "iss": "someone-else"}),
        "not yet valid (nbf)": forged(runtime, {**claims, "nbf": int(time.time()) + 3600}),
        "issued in the future": forged(runtime, {**claims, "iat": int(time.time()) + 3600}),
        "kid of another key": forged(runtime, claims, headers={"kid": "not-our-key"},
                                     key=ec.generate_private_key(ec.SECP256R1())),
        "refresh as access": forged(runtime, {**claims, "typ": "refresh"}),
        "unknown subject": forged(runtime, {**claims, "sub": "00000000-0000-0000-0000-0"}),
    }
    for name, bad in attempts.items():
        response = me(client, bad)
        assert response.status_code == 401, name
    assert me(client, token).status_code == 200


def test_token_dies_with_disabled_or_deleted_user(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    token = token_for(client, user.username)
    # /auth/me, and the routes that read the caller and one user in one search.
    paths = ["/auth/me", f"/people/{user.username}", f"/api/users/{user.username}",
             "/people/admin", "/api/users/admin"]
    headers = {"Authorization": f"Bearer {token}"}
    run(runtime.service.disable_user(user.username))
    assert me(client, token).json()["title"] == "account disabled"
    assert [client.get(p, headers=headers).status_code for p in paths] == [401] * 5
    run(runtime.service.enable_user(user.username))
    assert [client.get(p, headers=headers).status_code for p in paths] == [200, 200, 200, 403,
                                                                          200]
    run(runtime.service.delete_user(user.username))
    assert [client.get(p, headers=headers).status_code for p in paths] == [401] * 5


def test_password_change_revokes_earlier_tokens(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    token = token_for(client, user.username)
    claims = claims_of(runtime, token)
    old = forged(runtime, {**claims, "iat": claims["iat"] - 5})
    run(runtime.service.set_password(user.username, "Changed-Horse-3"))
    assert me(client, old).status_code == 401
    for path in (f"/people/{user.username}", f"/api/users/{user.username}"):
        assert client.get(path, headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert me(client, token_for(client, user.username, "Changed-Horse-3")).status_code == 200


def test_role_is_read_from_the_directory_not_the_token(client: Client,
                                                       runtime: Runtime) -> None:
    user = create(runtime, account_type="admin")
    token = token_for(client, user.username)
    run(runtime.service.set_account_type(user.username, "user"))
    response = client.get("/people", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403  # the token still says admin


def test_unknown_user_costs_a_real_bind(client: Client, slapd: SlapdInstance) -> None:
    """A login for a name that does not exist binds the decoy entry with the
    given password: the same argon2 check as a wrong password, so answer and
    timing do not tell whether the user exists."""
    decoy = "cn=decoy,ou=services,dc=example,dc=org"

    def failures() -> set[str]:
        shown = slapd.ldap("ldapsearch", "-LLL", "-b", decoy, "-s", "base", "pwdFailureTime",
                           bind="root").stdout
        return {line for line in shown.splitlines() if line.startswith("pwdFailureTime:")}

    before = failures()
    response = client.post("/auth/token", json={"username": unique("ghost"),
                                                "password": "whatever-1"})
    assert response.status_code == 401
    assert failures() - before  # slapd checked the password and recorded the failure


def test_jwks_verifies_tokens_like_an_sso_integration(config: Config, runtime: Runtime,
                                                      bootstrapped: None) -> None:
    with serving(config) as url:
        user = create(runtime)
        token = httpx.post(f"{url}/auth/token",
                           json={"username": user.username, "password": PASSWORD}
                           ).json()["access_token"]
        client = jwt.PyJWKClient(f"{url}/.well-known/jwks.json")
        signing_key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key.key, algorithms=["ES256"], issuer="userdir",
                            options={"require": ["exp", "iat", "sub"]})
        assert claims["sub"] == user.uuid and claims["uid"] == user.username


def test_signing_key_is_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    first = SigningKey.load_or_create(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = SigningKey.load_or_create(path)
    assert again.kid == first.kid and again.jwks() == first.jwks()
    assert "d" not in first.jwks()["keys"][0]


def test_a_cached_signature_still_expires(runtime: Runtime) -> None:
    short = Authenticator(runtime.service, runtime.auth.key, issuer="userdir", access_ttl=1,
                          refresh_ttl=10, leeway=0)
    token = short.issue(create(runtime), "access")
    assert short.decode(token)["typ"] == "access"  # verified, now cached
    time.sleep(2.1)
    with pytest.raises(ExpiredToken):
        short.decode(token)
