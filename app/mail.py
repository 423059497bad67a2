"""Outgoing mail: SMTP, or the log (the default, so that `make run` needs no mail server)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from app import metrics
from app.config import MailConfig

log = logging.getLogger("userdir.mail")


class MailUnavailable(Exception):
    """The mail server could not be reached, or did not take the message."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Hand the message over, or raise MailUnavailable."""


class ConsoleMailer:
    """Writes each message to the log; what it holds (a code) is meant to be read there."""

    async def send(self, mail: Mail) -> None:
        log.info("mail (console backend) to %s\nSubject: %s\n\n%s", mail.to, mail.subject,
                 mail.body)
        metrics.MAIL.labels("sent").inc()


class SmtpMailer:
    """One SMTP session per message, in a worker thread: smtplib blocks, and
    mail is rare enough that a pool of sessions would only add failure modes."""

    def __init__(self, settings: MailConfig) -> None:
        self.settings = settings

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self.deliver, mail)

    def deliver(self, mail: Mail) -> None:
        s = self.settings
        message = EmailMessage()
        message["From"] = s.from_address
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=s.from_address.rpartition("@")[2] or None)
        message.set_content(mail.body)
        try:
            with self._session() as session:
                session.send_message(message)
        except (smtplib.SMTPException, OSError) as e:
            # The reason, not the message: it holds a code. Never the password.
            log.warning("mail via %s:%s not sent: %s", s.host, s.port, type(e).__name__)
            metrics.MAIL.labels("failed").inc()
            raise MailUnavailable(f"mail not sent: {type(e).__name__}") from e
        metrics.MAIL.labels("sent").inc()

    def _session(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        session: smtplib.SMTP
        if s.security == "tls":
            session = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            session = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.security == "starttls":
                session.starttls(context=context)
            if s.username:
                session.login(s.username, s.password)
        except BaseException:
            session.close()
            raise
        return session


def mailer_from(settings: MailConfig) -> Mailer:
    if settings.backend == "smtp":
        return SmtpMailer(settings)
    return ConsoleMailer()
