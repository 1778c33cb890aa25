"""HTTP plumbing shared by the routes: OpenRouter-shaped errors and bearer auth."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._config import ErrorRule, SimulatorConfig

_INJECTED_MESSAGES = {
    429: "Rate limit exceeded (simulated)",
    500: "Internal Server Error (simulated)",
    502: "Provider returned error (simulated)",
    503: "Service temporarily unavailable (simulated)",
}


class ApiError(Exception):
    """Raised by handlers; rendered as `{"error": {"code", "message"}}` with that status."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.metadata = metadata


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, metadata: dict[str, Any] | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        error["metadata"] = metadata
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers, exc.metadata)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 in OpenRouter's error shape."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def retry_after_value(seconds: float) -> str:
    """Whole seconds as an integer; fractions kept (non-standard, but lets tests run fast)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def injected_error(rule: ErrorRule) -> ApiError:
    headers = {} if rule.retry_after is None else {"Retry-After": retry_after_value(rule.retry_after)}
    message = _INJECTED_MESSAGES.get(rule.status, f"Simulated error {rule.status}")
    metadata = {"error_type": "rate_limit_exceeded"} if rule.status == 429 else None
    return ApiError(rule.status, message, headers, metadata)


def check_auth(request: Request, config: SimulatorConfig) -> None:
    """Bearer auth: the configured key, or any non-empty key when none is configured."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "No auth credentials found")
    if config.api_key is not None and not hmac.compare_digest(key.encode(), config.api_key.encode()):
        raise ApiError(401, "Invalid API key")
