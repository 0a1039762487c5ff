"""Payload encryption: every payload the project writes to Temporal is AES-256-GCM ciphertext.

Workflow histories hold admin names, email addresses, tenant names and checkout ids for as long as the
namespace's retention keeps them, on whatever cluster runs them. With ``PAYLOAD_KEYS`` set, every
payload (workflow and activity inputs and results, signals, queries, memos, failure details, and a
failure's message and stack trace through encoded failure attributes) leaves the process encrypted.
Search attributes are not payloads and stay plain: they hold ids only.

The format, per payload (written out so another SDK can implement the same codec):

- ``inner = payload.SerializeToString()`` (the whole ``temporal.api.common.v1.Payload`` protobuf:
  metadata and data);
- if ``zlib.compress(inner)`` is at least 10 % smaller, it replaces ``inner`` and the new payload says
  ``compression: zlib``;
- ``data = nonce (12 random bytes) || AES-256-GCM(key, nonce, inner, associated data)`` (ciphertext
  followed by the 16-byte tag), the associated data being ``<key id>|<compression>`` in ASCII
  (``k2026|zlib``, or ``k2026|`` when not compressed): the metadata that decides how the data is read
  is authenticated with it, so it cannot be stripped or added;
- metadata ``encoding: binary/encrypted``, ``encryption-cipher: AES256-GCM``,
  ``encryption-key-id: <key id>`` and, when compressed, ``compression: zlib``.

Keys (``PAYLOAD_KEYS``, a secret, from the environment or a Vault-rendered file) are
``<keyId>:<base64 of 32 bytes>`` separated by commas; ``PAYLOAD_ACTIVE_KEY_ID`` names the one that
encrypts and every listed key decrypts, so a rotation adds a key, switches the active id and keeps the
old ones for as long as histories written under them are retained.

Decoding leaves plain payloads as they are (a worker with keys serves runs started by plain callers and
runs in flight from before encryption was switched on); an encrypted payload under a key id this
process does not hold raises :class:`UnknownKeyError`, a payload that does not authenticate raises
:class:`PayloadDecryptionError`. Neither is a Temporal failure type on purpose: raised while a workflow
task is decoded they fail the *task*, which Temporal retries, so a worker that has the key can finish
the run; the run itself is never failed by a worker that merely lacks a key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    PayloadConverter,
)

from alga_worker.converter import DATA_CONVERTER

if TYPE_CHECKING:
    from pydantic import SecretStr

    from alga_worker.config import Settings

ENCODING = b"binary/encrypted"
CIPHER = b"AES256-GCM"
COMPRESSION = b"zlib"
META_ENCODING = "encoding"
META_CIPHER = "encryption-cipher"
META_KEY_ID = "encryption-key-id"
META_COMPRESSION = "compression"

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16
COMPRESSION_MIN_SAVING = 0.10  # compress only when it saves at least 10 %
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

PAYLOAD_KEYS_VARIABLE = "PAYLOAD_KEYS"
ACTIVE_KEY_VARIABLE = "PAYLOAD_ACTIVE_KEY_ID"
ENCRYPTION_VARIABLE = "PAYLOAD_ENCRYPTION"

EncryptionMode = Literal["auto", "on", "off"]
ENCRYPTION_MODES: tuple[EncryptionMode, ...] = ("auto", "on", "off")


class PayloadCodecError(Exception):
    """A payload could not be decoded. The message names key ids, never key material or data."""


class UnknownKeyError(PayloadCodecError):
    """The payload was encrypted under a key id this process does not hold."""

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        self.key_id = key_id
        self.known = tuple(known)
        held = ", ".join(sorted(self.known)) or "none"
        super().__init__(f"payload encrypted with key id {key_id!r}, which this process does not have "
                         f"(its {PAYLOAD_KEYS_VARIABLE} hold: {held}); add that key to {PAYLOAD_KEYS_VARIABLE}")


class PayloadDecryptionError(PayloadCodecError):
    """An encrypted payload did not authenticate (tampered, truncated, or a different key under the
    same id) or is not in a format this codec writes."""


class PayloadKeyError(ValueError):
    """``PAYLOAD_KEYS`` / ``PAYLOAD_ACTIVE_KEY_ID`` are malformed. ``variable`` names which one; the
    message never contains a key."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable}: {reason}")


@dataclass(frozen=True)
class PayloadKeys:
    """The keys this process holds: ``active_key_id`` encrypts, every key decrypts."""

    keys: Mapping[str, bytes] = dataclasses.field(repr=False)
    active_key_id: str

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, "key ids must match [A-Za-z0-9._-]{1,64}")
            if len(key) != KEY_BYTES:
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, f"key {key_id!r} must be {KEY_BYTES} bytes")
        if self.active_key_id not in self.keys:
            raise PayloadKeyError(ACTIVE_KEY_VARIABLE, f"names a key id that is not in {PAYLOAD_KEYS_VARIABLE} "
                                                       f"(it has: {', '.join(self.keys) or 'none'})")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self.keys)

    @classmethod
    def parse(cls, value: str, active_key_id: str | None = None) -> PayloadKeys:
        """``<keyId>:<base64 of 32 bytes>,...`` and the active id (optional when there is one key).

        Raises :class:`PayloadKeyError` naming the variable; the reason names key ids at most."""
        keys: dict[str, bytes] = {}
        for position, item in enumerate((part.strip() for part in value.split(",")), start=1):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep:
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, f"entry {position} is not <keyId>:<base64 key>")
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE,
                                      f"entry {position}: key id must match [A-Za-z0-9._-]{{1,64}}")
            if key_id in keys:
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, f"key id {key_id!r} is listed twice")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, f"key {key_id!r} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE,
                                      f"key {key_id!r} must be {KEY_BYTES} bytes (base64 of {KEY_BYTES} "
                                      f"random bytes), got {len(key)}")
            keys[key_id] = key
        if not keys:
            raise PayloadKeyError(PAYLOAD_KEYS_VARIABLE, "no keys given")
        active = (active_key_id or "").strip()
        if not active:
            if len(keys) > 1:
                raise PayloadKeyError(ACTIVE_KEY_VARIABLE, f"required when {PAYLOAD_KEYS_VARIABLE} holds more "
                                                           "than one key")
            active = next(iter(keys))
        if active not in keys:
            raise PayloadKeyError(ACTIVE_KEY_VARIABLE, f"names a key id that is not in {PAYLOAD_KEYS_VARIABLE} "
                                                       f"(it has: {', '.join(keys)})")
        return cls(keys=keys, active_key_id=active)


def generate_key() -> str:
    """A new key's base64 (32 random bytes), for ``PAYLOAD_KEYS``."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload, key id in the metadata, zlib first when it pays.

    Usable on its own: ``await EncryptionCodec(keys).encode(payloads)``. ``encrypt=False`` makes a
    decode-only codec (``PAYLOAD_ENCRYPTION=off`` with keys still configured: payloads are written plain
    while runs encrypted earlier can still be read). ``compress=False`` never compresses (decoding
    always honours ``compression: zlib``).
    """

    def __init__(self, keys: PayloadKeys | None, *, encrypt: bool = True, compress: bool = True) -> None:
        self.keys = keys
        self.encrypt = encrypt and keys is not None
        self.compress = compress
        self._ciphers = {} if keys is None else {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not self.encrypt:
            return list(payloads)
        return [self.encode_one(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get(META_ENCODING) == ENCODING:
            return payload  # already encrypted (by a caller's codec): never twice
        assert self.keys is not None  # encrypt is False without keys
        inner = payload.SerializeToString(deterministic=True)
        key_id = self.keys.active_key_id
        metadata = {META_ENCODING: ENCODING, META_CIPHER: CIPHER, META_KEY_ID: key_id.encode("ascii")}
        if self.compress:
            compressed = zlib.compress(inner)
            if len(compressed) <= len(inner) * (1 - COMPRESSION_MIN_SAVING):
                inner = compressed
                metadata[META_COMPRESSION] = COMPRESSION
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, inner, associated_data(metadata[META_KEY_ID],
                                                                          metadata.get(META_COMPRESSION)))
        return Payload(metadata=metadata, data=nonce + sealed)

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get(META_ENCODING) != ENCODING:
            return payload  # plain: written before encryption, or by a plain caller
        raw_id = payload.metadata.get(META_KEY_ID, b"")
        key_id = raw_id.decode("ascii", "replace")
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise PayloadDecryptionError("encrypted payload without a valid encryption-key-id")
        cipher_name = payload.metadata.get(META_CIPHER)
        if cipher_name != CIPHER:
            shown = (cipher_name or b"").decode("ascii", "replace")[:40]
            raise PayloadDecryptionError(f"encrypted payload with unsupported cipher {shown!r} "
                                         f"(key id {key_id!r})")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id, () if self.keys is None else self.keys.key_ids)
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadDecryptionError(f"encrypted payload under key id {key_id!r} is truncated")
        try:
            inner = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                   associated_data(raw_id, payload.metadata.get(META_COMPRESSION)))
        except InvalidTag:
            raise PayloadDecryptionError(f"encrypted payload under key id {key_id!r} does not authenticate "
                                         "(tampered, truncated, or another key under the same id)") from None
        compression = payload.metadata.get(META_COMPRESSION)
        try:
            if compression == COMPRESSION:
                inner = zlib.decompress(inner)
            elif compression is not None:
                raise PayloadDecryptionError(f"encrypted payload under key id {key_id!r} has an unknown "
                                             "compression")
            decoded = Payload()
            decoded.ParseFromString(inner)
        except PayloadDecryptionError:
            raise
        except Exception as err:  # zlib.error, protobuf DecodeError: metadata that does not fit the data
            raise PayloadDecryptionError(f"encrypted payload under key id {key_id!r} does not decode "
                                         f"({type(err).__name__})") from None
        return decoded


def associated_data(key_id: bytes, compression: bytes | None) -> bytes:
    """What AES-GCM authenticates besides the data: ``<key id>|<compression or nothing>``."""
    return key_id + b"|" + (compression or b"")


class EncodedFailureConverter(DefaultFailureConverterWithEncodedAttributes):
    """Failure messages and stack traces go through the codec (Temporal's encoded failure attributes),
    except a codec error's own: a workflow task that failed because this worker lacks a key says so in
    clear (``UnknownKeyError: payload encrypted with key id 'k2027' ...``: key ids only, no data), so an
    operator sees why without the codec server instead of "Encoded failure"."""

    def __init__(self) -> None:
        super().__init__()
        self._plain = DefaultFailureConverter()

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if isinstance(exception, PayloadCodecError):
            self._plain.to_failure(exception, payload_converter, failure)
        else:
            super().to_failure(exception, payload_converter, failure)


class PayloadKeySettings(Protocol):
    """What :func:`build_codec` reads: :class:`alga_worker.config.Settings` and ``ClientSettings``."""

    @property
    def payload_keys(self) -> SecretStr | None: ...
    @property
    def payload_active_key_id(self) -> str | None: ...
    @property
    def payload_encryption(self) -> str: ...


def payload_keys(settings: PayloadKeySettings) -> PayloadKeys | None:
    """The parsed keys, or None when ``PAYLOAD_KEYS`` is empty."""
    if settings.payload_keys is None or not settings.payload_keys.get_secret_value().strip():
        return None
    return PayloadKeys.parse(settings.payload_keys.get_secret_value(), settings.payload_active_key_id)


def build_codec(settings: PayloadKeySettings) -> EncryptionCodec | None:
    """The codec for these settings, or None when ``PAYLOAD_KEYS`` is empty (payloads stay plain)."""
    keys = payload_keys(settings)
    if keys is None:
        return None
    return EncryptionCodec(keys, encrypt=settings.payload_encryption != "off")


def converter_with(codec: EncryptionCodec | None) -> DataConverter:
    """The project's converter with ``codec``; failure messages and stack traces go into encoded
    attributes (through the codec) whenever it encrypts.

    Without a codec (no keys) payloads stay plain, but an encrypted one is still recognised: decoding it
    raises :class:`UnknownKeyError` and fails the workflow *task*, so a worker that has the key can finish
    the run; handed to the payload converter as it is, it would fail the run itself as undecodable."""
    if codec is None:
        codec = EncryptionCodec(None, encrypt=False)
    if not codec.encrypt:
        return dataclasses.replace(DATA_CONVERTER, payload_codec=codec)
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec, failure_converter_class=EncodedFailureConverter)


def data_converter(settings: PayloadKeySettings) -> DataConverter:
    """The data converter of every client and worker the project creates."""
    return converter_with(build_codec(settings))


def settings_problems(raw_keys: str | None, active_key_id: str | None, mode: str | None,
                      environment: str | None, *, check_mode: bool = True) -> list[tuple[str, str]]:
    """Configuration problems of the three variables, as ``(variable, reason)``, never a value.

    A production worker (``NODE_ENV=production``) needs keys unless ``PAYLOAD_ENCRYPTION=off`` says
    plain payloads are intended; ``PAYLOAD_ENCRYPTION=on`` needs keys everywhere. ``check_mode=False``
    when the caller validates ``PAYLOAD_ENCRYPTION`` itself (the Settings model does)."""
    problems: list[tuple[str, str]] = []
    mode = (mode or "auto").strip().lower()
    if check_mode and mode not in ENCRYPTION_MODES:
        problems.append((ENCRYPTION_VARIABLE, "must be auto, on or off"))
    has_keys = bool(raw_keys and raw_keys.strip())
    if has_keys:
        try:
            PayloadKeys.parse(raw_keys or "", active_key_id)
        except PayloadKeyError as err:
            problems.append((err.variable, err.reason))
    elif active_key_id and active_key_id.strip():
        problems.append((ACTIVE_KEY_VARIABLE, f"set but {PAYLOAD_KEYS_VARIABLE} is empty"))
    elif mode == "on":
        problems.append((PAYLOAD_KEYS_VARIABLE, f"required when {ENCRYPTION_VARIABLE}=on"))
    elif mode == "auto" and (environment or "").strip().lower() == "production":
        problems.append((PAYLOAD_KEYS_VARIABLE, "required when NODE_ENV=production: payloads would reach "
                                                f"Temporal in clear (set {ENCRYPTION_VARIABLE}=off to run "
                                                "without payload encryption on purpose)"))
    return problems


def policy_problems(settings: PayloadKeySettings, environment: str) -> list[tuple[str, str]]:
    """The start-up policy: a production worker encrypts unless told otherwise, as ``(variable, reason)``."""
    return settings_problems(settings.payload_keys.get_secret_value() if settings.payload_keys else None,
                             settings.payload_active_key_id, settings.payload_encryption, environment)


def require_encryption_policy(settings: Settings) -> None:
    """Raise :class:`~alga_worker.config.ConfigError` naming ``PAYLOAD_KEYS`` when a worker with
    ``NODE_ENV=production`` (or ``PAYLOAD_ENCRYPTION=on``) has no keys and ``PAYLOAD_ENCRYPTION`` is not
    ``off``. Called before a worker starts (``alga-worker run``/``check``, :func:`run_worker`)."""
    from alga_worker.config import ConfigError

    problems = policy_problems(settings, settings.environment)
    if problems:
        raise ConfigError(problems)
