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


class TokenOwners:
    """Box token hashes seen valid lately, and their box: a hint, never the authority.

    An upload whose token is here skips the look-up before its body is read: the store
    checks the token again in the transaction that would keep the records (one query per
    group commit instead of a round trip per upload), so a token revoked meanwhile, by
    ``box-revoke`` in another process too, stores nothing and is refused at once. The hint
    also names the box whose rate budget an upload is charged to: the token's, never one
    the body claims. Bounded: when full it starts again empty (a miss costs one look-up).
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._owners: dict[bytes, str] = {}
        self._max = max_entries

    def get(self, token_hash: bytes) -> str | None:
        """The box of a token seen valid, or None."""
        return self._owners.get(token_hash)

    def remember(self, token_hash: bytes, box_id: str) -> None:
        """Note that this token was valid for ``box_id``."""
        if len(self._owners) >= self._max:
            self._owners.clear()
        self._owners[token_hash] = box_id

    def forget(self, token_hash: bytes) -> None:
        """Drop a token the store refused."""
        self._owners.pop(token_hash, None)
