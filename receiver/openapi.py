"""The receiver's HTTP API as an OpenAPI 3.0 document, served at `GET /openapi.json`.

It is served without the bearer token, like `/healthz`: it describes the API's shape (already
public in the README) and holds no data and no secret. Tests fuzz the running receiver against it
(tests/test_schema_fuzz.py), so a response that drifts from this document fails the suite.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from client import ALL_STATUSES

from .api import MAX_INDEX, MAX_MODEL_CHARS, MAX_PROMPT_CHARS

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$"
OUTPUT_STATES = ("pending", "downloading", "done", "failed", "gone")
DELIVERY_OUTCOMES = ("accepted", "duplicate")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_TIME = {"type": "string", "format": "date-time"}
_ERROR_RESPONSE = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR_RESPONSE, description)


_UNAUTHORIZED = {
    **_error("Missing or wrong bearer token."),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
}

_JOB_FIELDS: dict[str, Any] = {
    "id": {"type": "string", "pattern": JOB_ID_PATTERN},
    "model": _nullable({"type": "string"}),
    "prompt": _nullable({"type": "string"}),
    # Statuses upstream adds later are recorded as they come, so this is not an enum.
    "status": {
        "type": "string",
        "description": f"one of {', '.join(ALL_STATUSES)} (or a newer upstream one)",
    },
    "created_at": _TIME,
    "submitted_at": _nullable(_TIME),
    "first_seen_at": _TIME,
    "updated_at": _TIME,
    "terminal_at": _nullable(_TIME),
    "source": {"type": "string", "description": "what last moved the record: webhook, poll or submit"},
    "registered": {"type": "boolean"},
    "error": _nullable({"type": "string"}),
    "cost": _nullable({"type": "number"}),
    "generation_id": _nullable({"type": "string"}),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "reason": {"type": "string", "description": "why a webhook was not verified"},
                },
            }
        },
    },
    "JobSummary": {"type": "object", "required": list(_JOB_FIELDS), "properties": _JOB_FIELDS},
    "Output": {
        "type": "object",
        "required": ["index", "state", "attempts", "bytes", "sha256", "error", "updated_at", "url"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "state": {"type": "string", "enum": list(OUTPUT_STATES)},
            "attempts": {"type": "integer", "minimum": 0},
            "bytes": _nullable({"type": "integer", "minimum": 0}),
            "sha256": _nullable({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
            "error": _nullable({"type": "string"}),
            "updated_at": _TIME,
            "url": _nullable({"type": "string", "description": "the content URL, once the output is done"}),
        },
    },
    "Event": {
        "type": "object",
        "required": ["at", "source", "kind", "status", "detail"],
        "properties": {
            "at": _TIME,
            "source": {"type": "string"},
            "kind": {"type": "string"},
            "status": _nullable({"type": "string"}),
            "detail": _nullable({"type": "string"}),
        },
    },
    "Job": {
        "allOf": [
            {"$ref": "#/components/schemas/JobSummary"},
            {
                "type": "object",
                "required": ["outputs", "events"],
                "properties": {
                    "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Output"}},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                },
            },
        ],
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "Registration": {
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN},
            "model": _nullable({"type": "string", "maxLength": MAX_MODEL_CHARS}),
            "prompt": _nullable({"type": "string", "maxLength": MAX_PROMPT_CHARS}),
        },
    },
    "WebhookEvent": {
        "type": "object",
        "description": "OpenRouter's `video.generation.<status>` event. Any verified body is stored and "
        "acknowledged; it is applied to its job right after, and one that is not such an event is kept as "
        "unprocessed (see `openrouter-video deliveries --unprocessed`).",
        "required": ["type", "data"],
        "properties": {
            "type": {"type": "string", "example": "video.generation.completed"},
            "created_at": {"type": "string"},
            "data": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "string", "pattern": JOB_ID_PATTERN},
                    "status": {"type": "string", "enum": list(ALL_STATUSES)},
                    "model": _nullable({"type": "string"}),
                    "generation_id": _nullable({"type": "string"}),
                    "error": _nullable({"type": "string"}),
                    "unsigned_urls": {"type": "array", "items": {"type": "string"}},
                    "usage": {
                        "type": "object",
                        "properties": {
                            "cost": _nullable({"type": "number"}),
                            "is_byok": _nullable({"type": "boolean"}),
                        },
                    },
                },
            },
        },
    },
    "DeliveryAnswer": {
        "type": "object",
        "required": ["received", "outcome"],
        "properties": {
            "received": {"type": "boolean", "enum": [True]},
            "outcome": {"type": "string", "enum": list(DELIVERY_OUTCOMES)},
        },
    },
}

_JOB_ID_PARAM = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
}


def _paths() -> dict[str, Any]:
    bearer = [{"bearerAuth": []}]
    return {
        "/webhooks/openrouter": {
            "post": {
                "operationId": "receiveWebhook",
                "summary": "OpenRouter's signed webhook: verified, stored durably, then answered",
                "security": [],
                "parameters": [
                    {
                        "name": "X-OpenRouter-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256>`",
                    },
                    {
                        "name": "X-OpenRouter-Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "`<job id>-<status>`",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}
                    },
                },
                "responses": {
                    "200": _json(
                        {"$ref": "#/components/schemas/DeliveryAnswer"}, "Stored (or already stored)."
                    ),
                    "401": _error(
                        "Not verified: `reason` says why (missing, malformed, too_old, mismatch, ...)."
                    ),
                    "413": _error("Body over the cap."),
                    "503": _error("Could not be stored; retry later."),
                },
            }
        },
        "/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "Job records, newest first, with cursor pagination",
                "security": bearer,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": list(ALL_STATUSES)},
                    },
                    {"name": "model", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "unix seconds or ISO-8601; created at or after",
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "unix seconds or ISO-8601; created before",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "`next_cursor` of the previous page",
                    },
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/JobList"}, "A page of jobs."),
                    "400": _error("A bad filter, limit or cursor."),
                    "401": _UNAUTHORIZED,
                },
            },
            "post": {
                "operationId": "registerJob",
                "summary": "Track a submitted job (idempotent); the polling fallback then covers it",
                "security": bearer,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Registration"}}
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Job"}, "Newly tracked."),
                    "200": _json({"$ref": "#/components/schemas/Job"}, "Already known."),
                    "400": _error("Not a JSON object, or a bad id, model or prompt."),
                    "401": _UNAUTHORIZED,
                    "413": _error("Body over the cap (RECEIVER_MAX_BODY_BYTES)."),
                },
            },
        },
        "/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job record with its outputs and events",
                "security": bearer,
                "parameters": [_JOB_ID_PARAM],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Job"}, "The record."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such job."),
                },
            }
        },
        "/jobs/{job_id}/content": {
            "get": {
                "operationId": "getJobContent",
                "summary": "A downloaded output (single Range requests supported)",
                "security": bearer,
                "parameters": [
                    _JOB_ID_PARAM,
                    {
                        "name": "index",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INDEX, "default": 0},
                    },
                    {"name": "Range", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The MP4.",
                        "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "206": {
                        "description": "Part of the MP4.",
                        "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "400": {
                        "description": "A bad index or Range header.",
                        "content": {
                            "application/json": {"schema": _ERROR_RESPONSE},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "401": _UNAUTHORIZED,
                    "404": _error("No such job, or the output is not downloaded (yet)."),
                    "416": {
                        "description": "Range not satisfiable.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"type": "string", "enum": ["ok"]}},
                        },
                        "Alive.",
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Database writable and disk above the floor",
                "security": [],
                "responses": {
                    code: _json(
                        {
                            "type": "object",
                            "required": ["status", "problems", "free_bytes"],
                            "properties": {
                                "status": {"type": "string", "enum": [status]},
                                "problems": {"type": "array", "items": {"type": "string"}},
                                "free_bytes": {"type": "integer", "minimum": 0},
                            },
                        },
                        description,
                    )
                    for code, status, description in (
                        ("200", "ready", "Ready."),
                        ("503", "not ready", "Not ready."),
                    )
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition",
                "security": bearer,
                "responses": {
                    "200": {
                        "description": "Counters and gauges.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _UNAUTHORIZED,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
    }


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "openrouter-video receiver",
            "version": "1",
            "description": "Receives OpenRouter's signed video webhooks, keeps job records and downloaded "
            "videos, and answers queries about them. Everything but the webhook, /healthz, "
            "/readyz and this document needs `Authorization: Bearer <RECEIVER_API_TOKEN>`.",
        },
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    return copy.deepcopy(_document())


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(_document())
