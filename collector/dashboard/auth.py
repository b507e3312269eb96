"""Dashboard sessions: the admin token exchanged for a signed, expiring cookie.

The cookie carries its own state (session id, expiry, a fingerprint of the admin token)
and an HMAC-SHA256 over it, keyed by a random key kept in the data store. So every
collector instance on the same database accepts it, and nothing about sessions lives in
one process's memory. Changing the admin token ends every session (the fingerprint no
longer matches); so does deleting the key from ``nps_meta``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from protocol.units import HOUR_S

from ..storage import Storage

COOKIE = "nps_dash"
KEY_META = "dashboard_session_key"
#: Login forms are valid this long (seconds): enough to type a token in.
LOGIN_FORM_TTL_S = HOUR_S


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _utf8(text: str) -> bytes:
    """``text`` as bytes, whatever a client sent: aiohttp hands undecodable header bytes
    over as lone surrogates, which a strict encode refuses."""
    return text.encode("utf-8", "surrogatepass")


def _same(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented MAC or token with ours. On bytes:
    ``hmac.compare_digest`` raises ``TypeError`` for a non-ASCII ``str``, and a cookie
    or form field is whatever the client chose to send."""
    return hmac.compare_digest(_utf8(presented), _utf8(expected))


async def session_key(store: Storage) -> bytes:
    """The signing key, made once per data store and shared by every instance."""
    kept = await store.get_meta(KEY_META)
    if kept is None:
        kept = await store.set_meta_once(KEY_META, secrets.token_hex(32))
    return bytes.fromhex(kept)


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator's session, as read back from a valid cookie."""

    sid: str
    expires: int
    csrf: str


class Signer:
    """Signs and checks session cookies and CSRF tokens with one key."""

    def __init__(self, key: bytes, admin_hash: bytes, lifetime_s: int) -> None:
        self._key = key
        # Only a fingerprint of the admin token's hash goes in the cookie, so a new
        # admin token invalidates old sessions without disclosing anything.
        self._admin_fp = hashlib.sha256(b"dash-fp" + admin_hash).hexdigest()[:16]
        self.lifetime_s = lifetime_s

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._key, _utf8(f"{purpose}|{payload}"), hashlib.sha256).digest())

    # -- session cookie -------------------------------------------------------------------
    def new_session(self, now: float | None = None) -> tuple[str, Session]:
        """A fresh cookie value and the session it stands for."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(18)
        expires = int(now) + self.lifetime_s
        payload = _b64(orjson.dumps({"sid": sid, "exp": expires, "fp": self._admin_fp}))
        return f"{payload}.{self._mac('session', payload)}", self._session(sid, expires)

    def _session(self, sid: str, expires: int) -> Session:
        return Session(sid, expires, self._mac("csrf", sid))

    def read_session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None where it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.partition(".")
        if not _same(mac, self._mac("session", payload)):
            return None
        try:
            doc = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(doc, dict):
            return None
        sid, expires, fp = doc.get("sid"), doc.get("exp"), doc.get("fp")
        if not isinstance(sid, str) or not isinstance(expires, int) or fp != self._admin_fp:
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return self._session(sid, expires)

    def check_csrf(self, session: Session, token: str | None) -> bool:
        """Whether a form's CSRF token is this session's."""
        return token is not None and _same(token, session.csrf)

    # -- the login form (there is no session yet) ------------------------------------------
    def login_token(self, now: float | None = None) -> str:
        """A signed, expiring token for the login form."""
        ts = str(int(time.time() if now is None else now))
        nonce = secrets.token_urlsafe(12)
        return f"{ts}.{nonce}.{self._mac('login', ts + '.' + nonce)}"

    def check_login_token(self, token: str | None, now: float | None = None) -> bool:
        """Whether a login form's token is ours and recent."""
        if not token or token.count(".") != 2:
            return False
        ts, nonce, mac = token.split(".")
        if not _same(mac, self._mac("login", ts + "." + nonce)):
            return False
        try:
            age = (time.time() if now is None else now) - int(ts)
        except ValueError:
            return False
        return 0 <= age <= LOGIN_FORM_TTL_S
