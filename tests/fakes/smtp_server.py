"""A fake SMTP relay on 127.0.0.1: aiosmtpd's real protocol engine with a recording handler.

It accepts mail, records each envelope and parsed message, and can be told to refuse recipient domains
(permanently with 550, or temporarily with 450) and to check AUTH against one username and password
(a wrong pair answers 535). AUTH is offered without TLS (``auth_require_tls=False``) because tests
have no certificate; STARTTLS is not offered.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class ReceivedMessage:
    """One delivered message: the envelope and the parsed RFC 5322 message."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class _Handler:
    reject_domains: set[str] = field(default_factory=set)
    defer_domains: set[str] = field(default_factory=set)
    messages: list[ReceivedMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain in self.reject_domains:
            return "550 5.1.1 Recipient address rejected: user unknown"
        if domain in self.defer_domains:
            return "450 4.2.1 Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos),
                                                 bytes(content), login))
        return "250 2.0.0 Message accepted for delivery"


class _EphemeralPortController(Controller):
    """aiosmtpd binds the given port; with port 0 learn the real one before its self-test connects."""

    def _trigger_server(self) -> None:
        if self.port == 0 and self.server is not None:
            self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class FakeSmtpServer:
    """A context manager running the relay in a background thread on an ephemeral port."""

    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        self._handler = _Handler()
        self._credentials = (username, password) if username is not None else None
        kwargs: dict[str, Any] = {"server_hostname": "fake-smtp.test", "ident": "fake-smtp"}
        if self._credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = _EphemeralPortController(self._handler, hostname="127.0.0.1", port=0, **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self._credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self._credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._handler.lock:
            return list(self._handler.messages)

    def reject_domain(self, domain: str) -> None:
        """Refuse recipients in ``domain`` with 550 (permanent)."""
        self._handler.reject_domains.add(domain.lower())

    def defer_domain(self, domain: str) -> None:
        """Refuse recipients in ``domain`` with 450 (temporary)."""
        self._handler.defer_domains.add(domain.lower())

    def start(self) -> FakeSmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FakeSmtpServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
