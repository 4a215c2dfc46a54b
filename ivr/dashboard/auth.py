"""Dashboard login: one operator token, exchanged for a signed session cookie.

The login page posts the token; a match (constant-time) sets an HttpOnly, SameSite=Strict cookie
holding an expiry and an HMAC of it keyed by the token, so changing the token logs everyone out
and a restart with the same token keeps sessions. The JSON API also takes
`Authorization: Bearer <token>` for scripts. The token never travels in a URL and is logged only
once, at start-up, when it was generated because none was configured.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time

from fastapi import HTTPException, Request

log = logging.getLogger("ivr.dashboard")

COOKIE = "ivr_dashboard"
SESSION_S = 12 * 3600


class DashboardAuth:
    def __init__(self, token: str | None):
        self.generated = not token
        self.token = token or secrets.token_urlsafe(24)
        self._key = hashlib.sha256(b"ivr-dashboard-session\0" + self.token.encode()).digest()

    def announce(self, url: str) -> None:
        """The one log line with the token: only when we made it up, so the operator can log in."""
        if self.generated:
            log.warning("dashboard: no IVR_DASHBOARD_TOKEN set; this run's login token is %s (%s)", self.token, url)

    def check_token(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_S)
        payload = f"{expires}.{secrets.token_hex(8)}"
        return f"{payload}.{self._sign(payload)}"

    def valid_session(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or cookie.count(".") != 2:
            return False
        payload, _, sig = cookie.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return False
        try:
            expires = int(payload.split(".", 1)[0])
        except ValueError:
            return False
        return (time.time() if now is None else now) < expires

    def session_id(self, cookie: str | None) -> str | None:
        """A valid session's own id (not secret: it proves nothing without the signature), so a
        call placed from the dashboard says which login placed it."""
        return "session " + cookie.split(".")[1] if self.valid_session(cookie) else None

    def authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.check_token(header[7:].strip())
        return self.valid_session(request.cookies.get(COOKIE))

    def require(self, request: Request) -> None:
        """FastAPI dependency for the JSON API: 401 (the pages go back to the login form)."""
        if not self.authenticated(request):
            raise HTTPException(status_code=401, detail="not logged in or session expired",
                                headers={"WWW-Authenticate": "Bearer"})

    def set_cookie(self, response, request: Request) -> None:
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(COOKIE, self.new_session(), max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=secure, path="/dashboard")

    @staticmethod
    def clear_cookie(response) -> None:
        response.delete_cookie(COOKIE, path="/dashboard")
