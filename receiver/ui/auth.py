"""Signing in to the dashboard: a signed session cookie, CSRF tokens, and a throttled token check.

- The cookie holds a random session id and its issue and expiry times, signed with HMAC-SHA256 under a
  key derived from RECEIVER_API_TOKEN and the webhook signing secret(s): every replica with the same
  settings accepts the others' sessions, and changing the token (or the secrets) signs everyone out.
  It is `HttpOnly`, `SameSite=Strict`, `Secure` when the request came over HTTPS (directly, or through
  a proxy whose X-Forwarded-Proto the server trusts), scoped to `/ui`, and lasts SESSION_SECONDS.
  Without a token (`serve --no-auth`, loopback only) every visitor gets a session at once, under a
  random per-process key.
- Each state-changing form carries a CSRF token bound to the session (an HMAC of its id); the sign-in
  form, before any session exists, a double-submit token (a random cookie repeated in the form). A
  POST whose Origin is another origin, or that the browser marks cross-site, is refused before that.
- The token is compared in constant time; failed sign-ins are limited per client address and in all,
  and a refusal says when to try again. The token never appears in a page, a URL or a log line.
- A named token with role `admin` signs in too (checked through the store, same throttling); a
  `read` or `submit` token is refused (the dashboard is an operator tool). Its session's cookie names
  the token, and each request checks it is still valid (receiver/auth.py's short cache): revoking the
  token ends its sessions within seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..domain.tokens import ADMIN_NAME
from ..settings import Settings

COOKIE = "orv_session"
SIGNIN_COOKIE = "orv_signin"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 12 * 3600
# Failed sign-ins: at most this many per client address, and in all, per window.
FAILURES_PER_ADDRESS = 10
FAILURES_IN_ALL = 100
FAILURE_WINDOW = 300.0
_LABEL = b"openrouter-video dashboard session v1"


@dataclass(frozen=True)
class Session:
    sid: str
    issued: int
    expires: int
    who: str = ADMIN_NAME  # the token signed in with: the built-in admin, or a named admin token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.token = settings.api_token.reveal().encode() if settings.api_token else None
        if self.token is not None:
            material = b"\0".join([_LABEL, *(s.encode() for s in settings.secret_values())])
            self.key = hmac.new(self.token, material, hashlib.sha256).digest()
        else:  # no token: one loopback process, sessions only to carry CSRF tokens
            self.key = os.urandom(32)
        self._failures: dict[str, deque[float]] = {}
        self._all_failures: deque[float] = deque()

    @property
    def open_access(self) -> bool:
        """No token configured (`serve --no-auth`): every visitor is signed in."""
        return self.token is None

    # -- the cookie ----------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self.key, text.encode(), hashlib.sha256).digest())

    def sign(self, text: str) -> str:
        """A signature of `text` under the session key (e.g. a flash message carried in a cookie)."""
        return self._sign(text)

    def verify(self, text: str, signature: str) -> bool:
        return hmac.compare_digest(signature.encode(), self._sign(text).encode())

    def new(self, who: str = ADMIN_NAME) -> tuple[Session, str]:
        now = int(time.time())
        session = Session(secrets.token_hex(16), now, now + SESSION_SECONDS, who)
        if who == ADMIN_NAME:  # v1: the built-in admin's, as before named tokens
            text = f"v1.{session.sid}.{session.issued}.{session.expires}"
            return session, f"{text}.{self._sign(text)}"
        # v2: a named token's, its name last (a name may hold dots; the signature never does)
        text = f"v2.{session.sid}.{session.issued}.{session.expires}.{who}"
        return session, f"v2.{session.sid}.{session.issued}.{session.expires}.{self._sign(text)}.{who}"

    def read(self, request: Request) -> Session | None:
        """The signed-in session the cookie holds (v1: the built-in admin's; v2: a named token's)."""
        value = request.cookies.get(COOKIE, "")
        parts = value.split(".", 5)
        if len(parts) == 5 and parts[0] == "v1":
            version, sid, issued_text, expires_text, signature = parts
            who, text = ADMIN_NAME, ".".join(parts[:4])
        elif len(parts) == 6 and parts[0] == "v2":
            version, sid, issued_text, expires_text, signature, who = parts
            text = f"v2.{sid}.{issued_text}.{expires_text}.{who}"
        else:
            return None
        if not hmac.compare_digest(signature, self._sign(text)):
            return None
        try:
            issued, expires = int(issued_text), int(expires_text)
        except ValueError:
            return None
        if not issued <= time.time() < expires:
            return None
        return Session(sid, issued, expires, who)

    def set_cookie(self, response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_SECONDS,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path=COOKIE_PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict"
        )

    # -- CSRF ----------------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.sid}")[:32]

    def csrf_ok(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())

    def signin_nonce(self, request: Request) -> tuple[str, bool]:
        """The sign-in form's double-submit token: the one in its cookie, else a new one (True: set it)."""
        current = request.cookies.get(SIGNIN_COOKIE, "")
        if len(current) == 32 and current.isalnum():
            return current, False
        return secrets.token_hex(16), True

    def set_signin_cookie(self, response: Response, request: Request, nonce: str) -> None:
        response.set_cookie(
            SIGNIN_COOKIE,
            nonce,
            max_age=3600,
            path=COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    # -- the token check -----------------------------------------------------------------------

    def retry_after(self, address: str) -> int:
        """Seconds until this address may try again (0: now)."""
        now = time.monotonic()
        waits = []
        for queue, limit in (
            (self._failures.get(address), FAILURES_PER_ADDRESS),
            (self._all_failures, FAILURES_IN_ALL),
        ):
            if queue is None:
                continue
            while queue and queue[0] < now - FAILURE_WINDOW:
                queue.popleft()
            if len(queue) >= limit:
                waits.append(int(queue[0] + FAILURE_WINDOW - now) + 1)
        return max(waits, default=0)

    def check_token(self, address: str, given: str) -> bool:
        """Constant-time comparison with RECEIVER_API_TOKEN; a wrong token counts against the address
        and against all (a named token is checked through the store by the caller, see views)."""
        ok = self.is_builtin(given)
        if not ok:
            self.note_failure(address)
        return ok

    def is_builtin(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self.token)

    def note_failure(self, address: str) -> None:
        now = time.monotonic()
        if len(self._failures) > 10_000:  # many addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(address, deque()).append(now)
        self._all_failures.append(now)


def same_origin(request: Request) -> bool:
    """False for a request the browser says came from another site: an Origin header naming another
    origin (or `null`), or Sec-Fetch-Site other than same-origin / none (typed or bookmarked)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # an old browser or a non-browser client: the CSRF token still has to match
    parts = urlsplit(origin)
    # The host name and scheme must match; the port only when the Host header names one (a proxy may
    # pass the host name alone, as nginx's `Host $host` does).
    host = request.headers.get("host", "")
    name, _, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "")
    try:
        origin_port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == request.url.scheme
        and (parts.hostname or "") == name.strip("[]").lower()
        and (not port or str(origin_port or {"http": 80, "https": 443}.get(parts.scheme)) == port)
    )
