"""app/mail.py against a real SMTP server: plain, STARTTLS, TLS, login, a server that is down."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.config import MailConfig
from app.mail import ConsoleMailer, Mail, MailUnavailable, SmtpMailer, mailer_from
from tests.conftest import free_port, run
from tests.smtp import Accounts, smtp_server

MAIL = Mail(to="alice@example.org", subject="Your verification code",
            body="Your verification code is 123456.\n")


def smtp(port: int, **settings: object) -> SmtpMailer:
    return SmtpMailer(msgspec.convert({"backend": "smtp", "host": "127.0.0.1", "port": port,
                                       "security": "none", "from_address": "userdir@example.org",
                                       "timeout": 5.0, **settings}, MailConfig))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the server's, and the client's only CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def server_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the client trusts it through OpenSSL's SSL_CERT_FILE."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_console_backend_writes_the_message_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="userdir.mail")
    run(ConsoleMailer().send(MAIL))
    assert "alice@example.org" in caplog.text and "123456" in caplog.text


def test_backend_comes_from_the_config() -> None:
    assert isinstance(mailer_from(MailConfig()), ConsoleMailer)
    assert isinstance(mailer_from(MailConfig(backend="smtp")), SmtpMailer)


def test_smtp_delivers_the_message_with_its_headers() -> None:
    with smtp_server() as (port, inbox):
        run(smtp(port).send(MAIL))
        message = inbox.take("alice@example.org")
    assert message["From"] == "userdir@example.org" and message["To"] == "alice@example.org"
    assert message["Subject"] == "Your verification code"
    assert message["Date"] and message["Message-ID"]
    body = message.get_body(("plain",))
    assert body is not None and "123456" in body.get_content()


def test_starttls_then_login(server_tls: ssl.SSLContext) -> None:
    with smtp_server(tls_context=server_tls, accounts=Accounts("mailer", "Mail-Secret-1")) as (
            port, inbox):
        run(smtp(port, security="starttls", username="mailer", password="Mail-Secret-1")
            .send(MAIL))
        inbox.take("alice@example.org")
    assert inbox.sessions[-1] == {"tls": True, "login": "mailer"}


def test_tls_from_the_first_byte(server_tls: ssl.SSLContext) -> None:
    with smtp_server(implicit_tls=server_tls) as (port, inbox):
        run(smtp(port, security="tls").send(MAIL))
        inbox.take("alice@example.org")
    assert inbox.sessions[-1]["tls"] is True


def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)  # but the client does not trust it
    with smtp_server(implicit_tls=context) as (port, _), pytest.raises(MailUnavailable):
        run(smtp(port, security="tls").send(MAIL))


def test_wrong_login_and_no_server_are_mail_unavailable_without_secrets_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="userdir")
    with smtp_server(accounts=Accounts("mailer", "Mail-Secret-1")) as (port, _), \
            pytest.raises(MailUnavailable):
        run(smtp(port, username="mailer", password="Wrong-Secret-2").send(MAIL))
    with pytest.raises(MailUnavailable):
        run(smtp(free_port(), password="Wrong-Secret-2").send(MAIL))  # nothing listens
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("userdir"))
    assert "not sent" in ours
    assert "Wrong-Secret-2" not in ours and "123456" not in ours
