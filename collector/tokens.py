"""Box and admin tokens: made random, stored only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

BOX_PREFIX = "nbx_"
ADMIN_PREFIX = "nadm_"


def new_box_token() -> str:
    """A fresh box token (256 random bits)."""
    return BOX_PREFIX + secrets.token_urlsafe(32)


def new_admin_token() -> str:
    """A fresh admin token (256 random bits)."""
    return ADMIN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the store keeps of a token. SHA-256 suffices: tokens carry 256 random bits,
    so there is nothing for a slow hash to protect against guessing."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def same_token(presented: str, expected_hash: bytes) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    return hmac.compare_digest(token_hash(presented), expected_hash)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None
