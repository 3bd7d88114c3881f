"""Encryption of provider keys at rest (MultiFernet over VAULT_KEYS).

The first VAULT_KEYS entry encrypts; every entry decrypts, so a new key can be
put in front and `manage.py rotate_vault_key` re-encrypts the rows with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

# sk-proj-, sk-svcacct-, sk-admin-, sk-None- or plain sk-: shown as the key's type.
_TYPED_PREFIX = re.compile(r"^(sk-(?:proj|svcacct|admin|None)-|sk-)")
_SECRET_SHAPE = re.compile(r"^[\x21-\x7e]{20,512}$")


class VaultError(Exception):
    """A stored secret could not be decrypted with any of VAULT_KEYS."""


@lru_cache(maxsize=4)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def _vault() -> MultiFernet:
    return _multifernet(tuple(settings.VAULT_KEYS))


@lru_cache(maxsize=4)
def _fingerprint_key(first_key: str) -> bytes:
    return hashlib.sha256(b"keymeter-fingerprint\x00" + first_key.encode()).digest()


@sensitive_variables("plaintext")
def encrypt(plaintext: str) -> str:
    return _vault().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _vault().decrypt(token.encode()).decode()
    except InvalidToken:
        raise VaultError("no key in VAULT_KEYS decrypts this secret") from None


def reencrypt(token: str) -> str:
    """The same secret encrypted with the first VAULT_KEYS entry."""
    try:
        return _vault().rotate(token.encode()).decode()
    except InvalidToken:
        raise VaultError("no key in VAULT_KEYS decrypts this secret") from None


@sensitive_variables("plaintext")
def fingerprint(plaintext: str) -> str:
    """HMAC-SHA256 keyed from the vault: finds duplicates and leaks without decrypting."""
    key = _fingerprint_key(settings.VAULT_KEYS[0])
    return hmac.new(key, plaintext.encode(), hashlib.sha256).hexdigest()


@sensitive_variables("plaintext")
def display_parts(plaintext: str) -> tuple[str, str]:
    """(prefix, last4): the only parts of a key keymeter ever shows."""
    match = _TYPED_PREFIX.match(plaintext)
    prefix = match.group(1) if match else plaintext[:3]
    return prefix, plaintext[-4:]


@sensitive_variables("plaintext")
def clean_secret(plaintext: str) -> str:
    """Strip and check a pasted key; the error never repeats the key."""
    plaintext = (plaintext or "").strip()
    if not _SECRET_SHAPE.match(plaintext):
        raise ValidationError(
            "That does not look like an API key: expected 20 to 512 printable characters "
            "without spaces.",
            code="invalid_secret",
        )
    return plaintext
