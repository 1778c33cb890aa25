"""The one error envelope of the receiver's HTTP API: `{"error": {"code": N, "message": "..."}}`.

Every refusal, from the webhook fast path, the pure ASGI middleware and the Starlette routes
alike, is built here, so the shape is stated once (and described once in the OpenAPI document).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, **extra}}


def error_bytes(status: int, message: str, **extra: Any) -> bytes:
    """The encoded envelope, for pure ASGI code that answers without a Response object."""
    return json.dumps(error_body(status, message, **extra), separators=(",", ":")).encode()


def error_response(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


INTERNAL_ERROR = "internal error; see the receiver's log"
