"""Email: provider-neutral messages, three providers (Resend, SMTP, outbox) and the welcome email.

Importing the package is cheap and side-effect free: the message models and errors load at once, while
the providers (which pull in the Resend SDK, ``requests`` and ``httpx``) and the templates load on first
use. That keeps ``from alga_worker.email.message import EmailMessage`` safe in code that the workflow
sandbox re-imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alga_worker.email.errors import EmailError, EmailRejected, EmailTemporarilyUnavailable
from alga_worker.email.message import EmailMessage, SendResult

if TYPE_CHECKING:
    from alga_worker.email.providers import EmailSender, build_email_sender
    from alga_worker.email.welcome import WELCOME_SUBJECT, WelcomeEmailContext, render_welcome_email

_LAZY = {
    "EmailSender": "alga_worker.email.providers",
    "build_email_sender": "alga_worker.email.providers",
    "WELCOME_SUBJECT": "alga_worker.email.welcome",
    "WelcomeEmailContext": "alga_worker.email.welcome",
    "render_welcome_email": "alga_worker.email.welcome",
}

__all__ = [
    "WELCOME_SUBJECT",
    "EmailError",
    "EmailMessage",
    "EmailRejected",
    "EmailSender",
    "EmailTemporarilyUnavailable",
    "SendResult",
    "WelcomeEmailContext",
    "build_email_sender",
    "render_welcome_email",
]


def __getattr__(name: str) -> Any:
    """Load provider and template modules on first access (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
