"""The SMTP provider: stdlib ``smtplib`` run in a worker thread.

SMTP has no idempotency protocol, so exactly-once is approximated twice over: the Message-ID is derived
from the idempotency key (a retried send carries the same Message-ID, which receiving systems use to
drop duplicates), and this process remembers the keys it has delivered, so an activity retry in the
same worker after a later failure does not send again.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections import OrderedDict

from pydantic import SecretStr

from alga_worker.email.errors import EmailError, EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult, recipient_domain
from alga_worker.email.mime import build_mime, message_id_for

logger = logging.getLogger("alga_worker.email")

_REMEMBERED_KEYS = 10_000
_IMPLICIT_TLS_PORT = 465


class SmtpEmailSender:
    """Delivers through one SMTP relay: STARTTLS when configured, AUTH when a username is set.

    Port 465 means implicit TLS (SMTPS); any other port starts in clear text and upgrades with STARTTLS
    when ``starttls`` is true. TLS always verifies the server certificate against the system CAs
    (or ``ssl_context`` when given).
    """

    name: str = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_address: str,
        from_name: str,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = True,
        timeout_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._from_address = from_address
        self._from_name = from_name
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_seconds
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._in_flight: set[str] = set()

    @property
    def destination(self) -> str:
        return f"smtp://{self._host}:{self._port}"

    async def send(self, message: EmailMessage, *, idempotency_key: str) -> SendResult:
        """Deliver unless this process already delivered the same key."""
        known = self._sent.get(idempotency_key)
        if known is not None:
            return SendResult(provider=self.name, message_id=known, destination=self.destination,
                              duplicate=True)
        if idempotency_key in self._in_flight:
            raise EmailTemporarilyUnavailable("a send with the same idempotency key is in progress")
        self._in_flight.add(idempotency_key)
        try:
            await asyncio.to_thread(self._deliver, message, idempotency_key)
        finally:
            self._in_flight.discard(idempotency_key)
        message_id = message_id_for(idempotency_key, self._from_address)
        self._sent[idempotency_key] = message_id
        while len(self._sent) > _REMEMBERED_KEYS:
            self._sent.popitem(last=False)
        logger.info("email sent", extra={"provider": self.name, "message_id": message_id,
                                         "recipient_domains": message.recipient_domains})
        return SendResult(provider=self.name, message_id=message_id, destination=self.destination)

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self._port == _IMPLICIT_TLS_PORT:
            return smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout,
                                    local_hostname=self._local_hostname, context=self._context())
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout,
                            local_hostname=self._local_hostname)

    def _deliver(self, message: EmailMessage, idempotency_key: str) -> None:
        """Blocking delivery; every SMTP or socket failure leaves as an EmailError subclass."""
        mime = build_mime(message, idempotency_key=idempotency_key, from_address=self._from_address,
                          from_name=self._from_name)
        try:
            with self._connect() as client:
                client.ehlo()
                if self._starttls and self._port != _IMPLICIT_TLS_PORT:
                    client.starttls(context=self._context())
                    client.ehlo()
                if self._username:
                    secret = self._password.get_secret_value() if self._password else ""
                    client.login(self._username, secret)
                refused = client.send_message(mime, from_addr=self._from_address, to_addrs=message.to)
        except EmailError:
            raise
        except Exception as err:
            raise _classify(err) from err
        if refused:
            # Some recipients took the message. Failing now would make a retry mail them again, so the
            # send counts as done and the refusal is logged (domains only).
            logger.warning("email refused for some recipients",
                           extra={"provider": self.name,
                                  "recipient_domains": sorted({recipient_domain(a) for a in refused})})


def _classify(err: Exception) -> EmailError:
    """Permanent for 5xx replies, refused recipients and bad configuration; transient otherwise."""
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in err.recipients.values()]
        domains = sorted({recipient_domain(a) for a in err.recipients})
        if codes and all(400 <= code < 500 for code in codes):
            return EmailTemporarilyUnavailable(f"smtp recipients deferred ({codes[0]}) at {domains}")
        return EmailRejected(f"smtp recipients refused ({codes[0] if codes else '?'}) at {domains}")
    if isinstance(err, smtplib.SMTPAuthenticationError):
        return EmailRejected(f"smtp authentication failed ({err.smtp_code})")
    if isinstance(err, smtplib.SMTPNotSupportedError):
        return EmailRejected(f"smtp server does not support a required extension: {err}")
    if isinstance(err, smtplib.SMTPResponseException):
        reply = _reply_text(err.smtp_error)
        if err.smtp_code >= 500:
            return EmailRejected(f"smtp rejected the message ({err.smtp_code}): {reply}")
        # 4xx, or smtplib's -1 for a connection closed before a reply: try again later.
        return EmailTemporarilyUnavailable(f"smtp temporary failure ({err.smtp_code}): {reply}")
    if isinstance(err, ssl.SSLCertVerificationError):
        return EmailRejected(f"smtp server certificate not trusted: {err.verify_message}")
    if isinstance(err, smtplib.SMTPServerDisconnected | OSError | smtplib.SMTPException):
        return EmailTemporarilyUnavailable(f"smtp server unreachable: {type(err).__name__}: {err}")
    return EmailRejected(f"smtp send failed: {type(err).__name__}")


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]
