"""Password hashing that Alga PSA's web app accepts, temporary passwords, and credential sealing.

Hash format (Alga ``shared/utils/encryption.ts``): PBKDF2-HMAC with the configured digest, the UTF-8
password, and as *salt input* the text ``pepper + salt_hex``; stored as ``salt_hex:derived_hex``.
Any change here locks every provisioned admin out of the web app, so the format is pinned by tests
that recompute it independently.

Sealing: the temporary password must travel from the activity that sets the hash to the activity
that emails it without ever appearing in workflow history in clear text. It is sealed with
AES-GCM (key derived from the pepper with HKDF, so no extra secret to distribute) and bound to the
workflow run, so a sealed blob cannot be replayed into another tenant's email.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Alphabet without look-alikes (0/O, 1/l/I) so a password read from an email is typed right.
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_LOWER = "abcdefghijkmnpqrstuvwxyz"
_DIGITS = "23456789"
_SPECIAL = "!@#$%^&*"
_ALPHABET = _UPPER + _LOWER + _DIGITS + _SPECIAL
_SEAL_INFO = b"alga-worker/credential-seal/v1"


@dataclass(frozen=True)
class PasswordHasher:
    """Alga-compatible PBKDF2 hasher. Built from settings; holds the pepper, so never log it."""

    pepper: str
    salt_bytes: int = 12
    iterations: int = 10_000
    key_length: int = 64
    algorithm: str = "sha512"

    def __repr__(self) -> str:  # the pepper must not reach logs through a repr
        return f"PasswordHasher(algorithm={self.algorithm!r}, iterations={self.iterations})"

    def hash(self, password: str, salt_hex: str | None = None) -> str:
        salt = salt_hex if salt_hex is not None else secrets.token_hex(self.salt_bytes)
        derived = hashlib.pbkdf2_hmac(
            self.algorithm,
            password.encode("utf-8"),
            (self.pepper + salt).encode("utf-8"),
            self.iterations,
            self.key_length,
        )
        return f"{salt}:{derived.hex()}"

    def verify(self, password: str, stored: str) -> bool:
        salt, sep, expected = stored.partition(":")
        if not sep or not salt or not expected:
            return False
        return hmac.compare_digest(self.hash(password, salt).encode(), stored.encode())


def generate_temporary_password(length: int = 16) -> str:
    """A CSPRNG password with one character of each class, shuffled without bias."""
    if length < 8:
        raise ValueError("temporary passwords are at least 8 characters")
    chars = [secrets.choice(s) for s in (_UPPER, _LOWER, _DIGITS, _SPECIAL)]
    chars += [secrets.choice(_ALPHABET) for _ in range(length - len(chars))]
    # Fisher-Yates with secrets.randbelow: the original's sort(random) shuffle was biased.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def password_classes(password: str) -> set[str]:
    """Which character classes a password uses (for tests and policy checks)."""
    found = set()
    for name, alphabet in (("upper", string.ascii_uppercase), ("lower", string.ascii_lowercase),
                           ("digit", string.digits), ("special", _SPECIAL)):
        if any(c in alphabet for c in password):
            found.add(name)
    return found


class SealError(Exception):
    """A sealed credential could not be opened: wrong key, wrong binding or tampered."""


class CredentialSealer:
    """Seal a short secret for transit through workflow history; open it in another activity."""

    def __init__(self, pepper: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
            pepper.encode("utf-8")
        )
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "CredentialSealer(<key hidden>)"

    def seal(self, secret: str, *, binding: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), binding.encode("utf-8"))
        return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, token: str, *, binding: str) -> str:
        if not token.startswith("v1."):
            raise SealError("unknown sealed credential version")
        try:
            raw = base64.urlsafe_b64decode(token[3:].encode("ascii"))
            plain = self._aead.decrypt(raw[:12], raw[12:], binding.encode("utf-8"))
        except Exception as err:  # InvalidTag, binascii.Error, ValueError
            raise SealError("sealed credential does not open with this key and binding") from err
        return plain.decode("utf-8")
