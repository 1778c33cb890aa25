"""Who a request is: a bearer token resolved to a `Principal` (receiver.domain.tokens), with roles.

- RECEIVER_API_TOKEN (the environment's) is the built-in `admin`, compared in constant time.
- A named token (`orv_...`) is looked up by its SHA-256 through the store (`Tokens.by_hash`). The
  answer is cached per process for CACHE_SECONDS, so a busy app costs one store read per few seconds,
  not one per request. The price: a revoked token keeps working for up to CACHE_SECONDS on each
  process (REVOCATION_DELAY, said in the README). An unknown token is never cached (a token created a
  moment ago works at once) and never reaches the store unless it has an issued token's shape.
- `BearerAuthMiddleware` puts the principal in the ASGI scope's state (`principal_of(request)`),
  binds `token=<name>` into the log context (never the token), answers 401 (no, unknown or revoked
  token) and 403 (a role without the permission, one line), and writes each request's log line.
"""

from __future__ import annotations

import contextlib
import hmac
import time

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .domain.tokens import (
    BUILTIN_ADMIN,
    DOING,
    Principal,
    looks_like_token,
    principal_for,
    required_permission,
    token_hash,
)
from .errors import error_bytes
from .storage.base import StoreUnavailable
from .storage.gateway import Tokens

log = structlog.get_logger("receiver.access")

CACHE_SECONDS = 5.0
REVOCATION_DELAY = CACHE_SECONDS  # how long a revoked token may still be accepted, per process
_MAX_CACHED = 10_000


class TokenAuth:
    """Resolves tokens to principals, with the short per-process cache described above."""

    def __init__(self, admin_token: str | None) -> None:
        self._admin = admin_token.encode() if admin_token else None
        self._by_hash: dict[str, tuple[float, Principal | None]] = {}
        self._by_name: dict[str, tuple[float, Principal | None]] = {}

    @property
    def open_access(self) -> bool:
        """No token configured (`serve --no-auth`, loopback only): every caller is the admin."""
        return self._admin is None

    def is_builtin(self, given: str) -> bool:
        return self._admin is not None and hmac.compare_digest(given.encode("utf-8", "replace"), self._admin)

    async def resolve(self, given: str, tokens: Tokens) -> Principal | None:
        """The principal of a presented token (None: unknown or revoked). StoreUnavailable may escape."""
        if self.is_builtin(given):
            return BUILTIN_ADMIN
        if not looks_like_token(given):
            return None
        digest = token_hash(given)
        cached = self._by_hash.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await tokens.by_hash(digest)
        if record is None:
            return None  # not cached: a token created a moment ago must work at once
        principal = principal_for(record) if record.revoked_at is None else None
        self._remember(self._by_hash, digest, principal)
        if principal is not None:  # once per cache period: what `tokens list` shows as last used
            with contextlib.suppress(StoreUnavailable):  # bookkeeping: the request itself needs none
                await tokens.touch(record.name, time.time())
        return principal

    async def named(self, name: str, tokens: Tokens) -> Principal | None:
        """The named token's principal while it is valid (None: revoked or gone): a dashboard
        session signed in with it checks this on each request, through the same short cache."""
        cached = self._by_name.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await tokens.get(name)
        principal = principal_for(record) if record is not None and record.revoked_at is None else None
        self._remember(self._by_name, name, principal)
        return principal

    @staticmethod
    def _remember(
        cache: dict[str, tuple[float, Principal | None]], key: str, value: Principal | None
    ) -> None:
        if len(cache) >= _MAX_CACHED:
            cache.clear()  # crude, and rare: a few thousand apps at most in practice
        cache[key] = (time.monotonic() + CACHE_SECONDS, value)


def principal_of_scope(scope: Scope) -> Principal:
    principal = scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # fail closed: an endpoint outside the guard is a bug
        raise RuntimeError("no principal: the endpoint is not behind BearerAuthMiddleware")
    return principal


def principal_of(request: Request) -> Principal:
    return principal_of_scope(request.scope)


class BearerAuthMiddleware:
    """Requires `Authorization: Bearer <token>` on the protected path prefixes, and the role's
    permission for the request (see receiver.domain.tokens)."""

    def __init__(self, app: ASGIApp, *, auth: TokenAuth, protected: tuple[str, ...]) -> None:
        self.app = app
        self.auth = auth
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.protected):
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            principal, refusal = await self._authorize(scope)
            if refusal is not None:
                status = refusal[0]
                await _answer(send, *refusal)
                return
            assert principal is not None
            scope.setdefault("state", {})["principal"] = principal
            structlog.contextvars.bind_contextvars(token=principal.name)
            await self.app(scope, receive, send_noting_status)
        finally:
            log.info("request", method=scope["method"], path=scope["path"][:200], status=status)

    async def _authorize(self, scope: Scope) -> tuple[Principal | None, tuple[int, str] | None]:
        if self.auth.open_access:
            return BUILTIN_ADMIN, None
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, credentials = given.partition(b" ")
        principal = None
        if scheme.lower() == b"bearer":  # the scheme is case-insensitive (RFC 7235)
            state = scope.get("state", {}).get("receiver")
            try:
                principal = await self.auth.resolve(
                    credentials.strip().decode("latin-1"), state.stores.tokens
                )
            except StoreUnavailable:
                return None, (503, "the token store is unavailable; retry")
        if principal is None:
            reason = "missing bearer token" if not given else "unknown or revoked bearer token"
            return None, (401, f"unauthorized: {reason}")
        needed = required_permission(scope["method"], scope["path"])
        if not principal.may(needed):
            structlog.contextvars.bind_contextvars(token=principal.name)
            return None, (
                403,
                f"forbidden: token {principal.name!r} has role {principal.role}, "
                f"which may not {DOING[needed]}",
            )
        return principal, None


async def _answer(send: Send, status: int, message: str) -> None:
    body = error_bytes(status, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="openrouter-video"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
