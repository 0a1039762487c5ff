"""The provider-neutral message and send result.

Validation lives here, once, instead of in each provider: an address that reaches a provider is
already normalised (lower-cased) and cannot smuggle extra headers (no CR/LF, commas or angle
brackets), and tag names are safe to use both as Resend tag names and as ``X-Alga-Tag-*`` header
names.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# The WHATWG HTML "valid e-mail address" grammar: strict enough to keep header syntax out of an
# address, loose enough for every address a person types. Internationalised addresses are not
# accepted (neither Resend nor a plain SMTP relay handles them reliably).
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_TAG_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_address(value: str) -> str:
    """Strip and lower-case an address, or raise ``ValueError`` naming the problem (not the value)."""
    address = value.strip().lower()
    if len(address) > 254 or not _ADDRESS.match(address):
        raise ValueError("not a valid email address")
    return address


Address = Annotated[str, AfterValidator(normalize_address)]


def recipient_domain(address: str) -> str:
    """The part after ``@``: the only piece of a recipient that logs may carry."""
    return address.rpartition("@")[2]


class EmailMessage(BaseModel):
    """One message to send: recipients, subject, both bodies, and tags for tracing.

    Both an HTML and a text body are required because the original derived the text part by
    stripping tags, which produced unreadable mail for text-only clients.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=50)
    subject: str = Field(min_length=1, max_length=998)
    # Bodies stay out of repr (and so out of tracebacks and log lines): they may hold a password.
    html: str = Field(min_length=1, repr=False)
    text: str = Field(min_length=1, repr=False)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("subject")
    @classmethod
    def _one_line_subject(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("subject must be one line without control characters")
        return value.strip()

    @field_validator("tags")
    @classmethod
    def _safe_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for name, tag_value in value.items():
            if not _TAG_NAME.match(name):
                raise ValueError("tag names may only hold ASCII letters, digits, '_' and '-' (1-64)")
            if _CONTROL.search(tag_value) or len(tag_value) > 256:
                raise ValueError("tag values must be one line of at most 256 characters")
        return value

    @property
    def recipient_domains(self) -> list[str]:
        """Distinct recipient domains, sorted, for log lines."""
        return sorted({recipient_domain(a) for a in self.to})


class SendResult(BaseModel):
    """What a provider reports after accepting a message; safe to return from an activity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    message_id: str
    destination: str
    duplicate: bool = False
