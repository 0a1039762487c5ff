"""Password hashing must match Alga PSA's web app bit for bit; checked against an independent computation."""

from __future__ import annotations

import hashlib
import re
import string

import pytest

from alga_worker.security import (
    CredentialSealer,
    PasswordHasher,
    SealError,
    generate_temporary_password,
    password_classes,
)

PEPPER = "test-pepper-NEXTAUTH-like-value"
SPECIAL = "!@#$%^&*"
AMBIGUOUS = "0O1lI"


def alga_hash(password: str, pepper: str, salt_hex: str, algorithm: str = "sha512", iterations: int = 10_000,
              key_length: int = 64) -> str:
    """What Alga's ``shared/utils/encryption.ts`` stores, written out here without our code."""
    derived = hashlib.pbkdf2_hmac(algorithm, password.encode(), (pepper + salt_hex).encode(), iterations,
                                  key_length)
    return f"{salt_hex}:{derived.hex()}"


# ---------------------------------------------------------------- hashing


def test_hash_matches_alga_format_with_defaults() -> None:
    hasher = PasswordHasher(pepper=PEPPER)
    stored = hasher.hash("Corr3ct horse!")
    salt_hex, _, derived_hex = stored.partition(":")

    assert re.fullmatch(r"[0-9a-f]{24}", salt_hex)
    assert re.fullmatch(r"[0-9a-f]{128}", derived_hex)
    assert len(stored) == 153
    assert stored == alga_hash("Corr3ct horse!", PEPPER, salt_hex)


def test_hash_with_given_salt_is_deterministic_and_matches_reference() -> None:
    hasher = PasswordHasher(pepper=PEPPER)
    salt = "00112233445566778899aabb"
    assert hasher.hash("pässwörd ✓", salt) == alga_hash("pässwörd ✓", PEPPER, salt)
    assert hasher.hash("pässwörd ✓", salt) == hasher.hash("pässwörd ✓", salt)


def test_hash_of_a_known_vector() -> None:
    """Pinned output: a change of any parameter or of the salt-string construction changes it."""
    stored = PasswordHasher(pepper="pepper").hash("password", "0123456789abcdef01234567")
    expected = hashlib.pbkdf2_hmac("sha512", b"password", b"pepper0123456789abcdef01234567", 10_000, 64).hex()
    assert stored == "0123456789abcdef01234567:" + expected


def test_random_salts_differ() -> None:
    hasher = PasswordHasher(pepper=PEPPER)
    assert hasher.hash("same") != hasher.hash("same")


def test_sha256_and_custom_parameters() -> None:
    hasher = PasswordHasher(pepper=PEPPER, salt_bytes=16, iterations=2000, key_length=32, algorithm="sha256")
    stored = hasher.hash("secret-pw")
    salt_hex, _, derived_hex = stored.partition(":")
    assert len(salt_hex) == 32
    assert len(derived_hex) == 64
    assert stored == alga_hash("secret-pw", PEPPER, salt_hex, "sha256", 2000, 32)
    assert hasher.verify("secret-pw", stored)
    # The same parameters with sha512 give another hash.
    assert stored != alga_hash("secret-pw", PEPPER, salt_hex, "sha512", 2000, 32)


def test_verify_accepts_a_hash_computed_by_the_reference() -> None:
    stored = alga_hash("from-the-web-app", PEPPER, "a1b2c3d4e5f6a7b8c9d0e1f2")
    hasher = PasswordHasher(pepper=PEPPER)
    assert hasher.verify("from-the-web-app", stored)
    assert not hasher.verify("from-the-web-ap", stored)
    assert not hasher.verify("From-the-web-app", stored)


def test_wrong_pepper_fails() -> None:
    stored = PasswordHasher(pepper=PEPPER).hash("pw-123456")
    assert not PasswordHasher(pepper=PEPPER + "x").verify("pw-123456", stored)
    assert not PasswordHasher(pepper="").verify("pw-123456", stored)


@pytest.mark.parametrize("stored", [
    "",
    ":",
    "no-colon-at-all",
    "abcdef:",
    ":abcdef",
    "hashed_password_1700000000",  # the pre-production placeholder format
    "00112233445566778899aabb:" + "0" * 128,
    "00112233445566778899aabb:zz",
])
def test_malformed_or_foreign_hash_returns_false(stored: str) -> None:
    assert PasswordHasher(pepper=PEPPER).verify("password", stored) is False


def test_repr_hides_the_pepper() -> None:
    hasher = PasswordHasher(pepper=PEPPER)
    assert PEPPER not in repr(hasher)
    assert PEPPER not in str(hasher)
    assert PEPPER not in f"{hasher!r} {hasher}"


# ---------------------------------------------------------------- temporary passwords


def test_default_password_length_and_classes() -> None:
    password = generate_temporary_password()
    assert len(password) == 16
    assert password_classes(password) == {"upper", "lower", "digit", "special"}


@pytest.mark.parametrize("length", [8, 9, 12, 16, 64])
def test_every_password_has_all_classes_and_no_ambiguous_characters(length: int) -> None:
    allowed = set(string.ascii_letters + string.digits + SPECIAL) - set(AMBIGUOUS)
    for _ in range(200):
        password = generate_temporary_password(length)
        assert len(password) == length
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.digits for c in password)
        assert any(c in SPECIAL for c in password)
        assert set(password) <= allowed, password
        assert not set(password) & set(AMBIGUOUS)


def test_passwords_are_unique() -> None:
    passwords = {generate_temporary_password() for _ in range(1000)}
    assert len(passwords) == 1000


def test_class_positions_are_shuffled() -> None:
    """The four guaranteed characters must not sit at fixed positions."""
    first_chars = {generate_temporary_password(8)[0] for _ in range(300)}
    kinds = {next(k for k, s in (("u", string.ascii_uppercase), ("l", string.ascii_lowercase),
                                 ("d", string.digits), ("s", SPECIAL)) if c in s) for c in first_chars}
    assert kinds == {"u", "l", "d", "s"}


@pytest.mark.parametrize("length", [7, 4, 0, -1])
def test_short_lengths_are_rejected(length: int) -> None:
    with pytest.raises(ValueError):
        generate_temporary_password(length)


def test_password_classes_helper() -> None:
    assert password_classes("abc") == {"lower"}
    assert password_classes("A1!") == {"upper", "digit", "special"}
    assert password_classes("") == set()


# ---------------------------------------------------------------- sealing


def test_seal_round_trip() -> None:
    sealer = CredentialSealer(PEPPER)
    password = generate_temporary_password()
    token = sealer.seal(password, binding="wf-1/run-1")
    assert token.startswith("v1.")
    assert password not in token
    assert CredentialSealer(PEPPER).open(token, binding="wf-1/run-1") == password


def test_token_does_not_contain_plaintext_in_any_simple_encoding() -> None:
    import base64

    secret = "Plaintext-Password-123!"
    token = CredentialSealer(PEPPER).seal(secret, binding="b")
    assert secret not in token
    assert base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")[:12] not in token
    assert secret.encode().hex() not in token


def test_sealing_twice_gives_different_tokens() -> None:
    sealer = CredentialSealer(PEPPER)
    assert sealer.seal("same", binding="b") != sealer.seal("same", binding="b")


def test_wrong_binding_fails() -> None:
    sealer = CredentialSealer(PEPPER)
    token = sealer.seal("pw", binding="tenant-a/run-1")
    with pytest.raises(SealError):
        sealer.open(token, binding="tenant-b/run-1")
    with pytest.raises(SealError):
        sealer.open(token, binding="")


def test_wrong_pepper_fails_to_open() -> None:
    token = CredentialSealer(PEPPER).seal("pw", binding="b")
    with pytest.raises(SealError):
        CredentialSealer(PEPPER + "-rotated").open(token, binding="b")


def _flip(token: str, index: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    ch = token[index]
    replacement = alphabet[(alphabet.index(ch) + 1) % len(alphabet)] if ch in alphabet else "A"
    return token[:index] + replacement + token[index + 1:]


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_tampered_token_fails(where: str) -> None:
    sealer = CredentialSealer(PEPPER)
    token = sealer.seal("a-temporary-password", binding="b")
    index = {"nonce": 5, "ciphertext": 3 + 20, "tag": len(token) - 5}[where]
    tampered = _flip(token, index)
    assert tampered != token
    with pytest.raises(SealError):
        sealer.open(tampered, binding="b")


@pytest.mark.parametrize("token", ["", "v1.", "v1.!!!not-base64!!!", "v2.AAAA", "plaintext-password", "v1.AAAA"])
def test_garbage_tokens_fail_with_seal_error(token: str) -> None:
    with pytest.raises(SealError):
        CredentialSealer(PEPPER).open(token, binding="b")


def test_truncated_token_fails() -> None:
    sealer = CredentialSealer(PEPPER)
    token = sealer.seal("pw-value", binding="b")
    with pytest.raises(SealError):
        sealer.open(token[:-4], binding="b")


def test_sealer_repr_hides_key() -> None:
    assert PEPPER not in repr(CredentialSealer(PEPPER))
