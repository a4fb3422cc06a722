"""Who is logged in to the page: a signed session cookie (itsdangerous), a CSRF token in it
for every form, and the login check against the configured credentials.

The signing key is derived from the configured credentials, so every replica accepts the
same cookie and changing the credentials logs everyone out. Without credentials (loopback
only, as the API) there is no login: the page is as open as the API is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from receiver.config import Settings

COOKIE = "autoheal_session"
LOGIN_COOKIE = "autoheal_login"  # the login form's own CSRF token (no session yet)
MAX_AGE = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    csrf: str

    @property
    def who(self) -> str:
        """How decisions made on the page are recorded."""
        return f"{self.user} (ui)"


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        secret = _credential(settings)
        key = (
            hashlib.sha256(b"autoheal-ui-session\0" + secret.encode()).digest()
            if secret
            else secrets.token_bytes(32)
        )
        self._key = key
        self._signer = URLSafeTimedSerializer(key, salt="autoheal-ui")

    @property
    def open(self) -> bool:
        """No credentials configured: no login (autoheal listens on loopback only)."""
        return not self.settings.has_credentials

    def check_login(self, user: str, password: str) -> bool:
        """The typed credentials against the configured ones (constant-time compares)."""
        s = self.settings
        if s.basic_auth is not None and _eq(f"{user}:{password}", s.basic_auth.get_secret_value()):
            return True
        return s.auth_token is not None and _eq(password, s.auth_token.get_secret_value())

    def current(self, request: web.Request) -> Session | None:
        if self.open:
            return Session("local", self._anonymous_csrf(request))
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=MAX_AGE)
        except BadSignature:  # tampered, expired, or signed with other credentials
            return None
        if not isinstance(data, dict) or not {"u", "c"} <= data.keys():
            return None
        return Session(str(data["u"]), str(data["c"]))

    def start(self, request: web.Request, response: web.StreamResponse, user: str) -> None:
        value = self._signer.dumps({"u": user[:100], "c": secrets.token_urlsafe(24)})
        self._set(request, response, COOKIE, value, MAX_AGE)

    def end(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/ui")

    def new_login_token(self) -> str:
        """The login form's CSRF token: a random value, kept in its own short-lived cookie."""
        return secrets.token_urlsafe(24)

    def keep_login_token(
        self, request: web.Request, response: web.StreamResponse, token: str
    ) -> None:
        self._set(request, response, LOGIN_COOKIE, token, 900)

    def login_token_ok(self, request: web.Request, sent: str) -> bool:
        kept = request.cookies.get(LOGIN_COOKIE, "")
        return bool(kept) and _eq(kept, sent)

    def _anonymous_csrf(self, request: web.Request) -> str:
        # Without a login there is no session to keep a token in: one tied to the client's
        # address, stable for the process (forms still cannot be posted from elsewhere).
        peer = (request.remote or "").encode()
        return hmac.new(self._key, b"csrf\0" + peer, hashlib.sha256).hexdigest()

    def _set(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str, age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path="/ui",
            httponly=True,
            samesite="Strict",
            # Secure behind TLS: served over https, or reached through an https external_url.
            secure=request.secure or (self.settings.external_url or "").startswith("https://"),
        )


def csrf_ok(session: Session, sent: str) -> bool:
    return bool(sent) and _eq(session.csrf, sent)


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _credential(settings: Settings) -> str:
    for secret in (settings.auth_token, settings.basic_auth):
        if secret is not None:
            return secret.get_secret_value()
    return ""
