"""The receiver's HTTP API as an OpenAPI 3.1 document, generated from its contract, served at `/openapi.json`.

The shapes come from `receiver.contract` (the same types the handlers validate and encode with);
this module only says which route takes and answers which shape. It is served without the bearer
token, like `/healthz`: it describes the API's shape (already public in the README) and holds no
data and no secret. Tests fuzz the running receiver against it (tests/test_schema_fuzz.py), so a
response that drifts from it fails the suite.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from openrouter_video import ALL_STATUSES, IDEMPOTENCY_HEADER, JOB_ID_PATTERN, SIGNATURE_HEADER, WEBHOOK_PATH

from . import contract as c
from . import contract_notify as cn
from .api_wait import WAIT_RESULT
from .domain.waiting import MAX_WAIT

_REF = "#/components/schemas/{name}"
_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}


@dataclass(frozen=True)
class Answer:
    """One response of an operation: a contract type (JSON), or a raw schema under a media type."""

    description: str
    shape: type | tuple[type, ...] | None = None  # several: any of them (anyOf)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    # Shapes carried inside a non-JSON answer (the data of Server-Sent Events): in the components only.
    carries: tuple[type, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    answers: dict[int, Answer]
    public: bool = False
    body: type | tuple[type, ...] | None = None  # several: any of them (anyOf)
    body_required: bool = True
    parameters: tuple[dict[str, Any], ...] = ()


def _param(
    name: str, where: str, schema: dict[str, Any], description: str = "", **more: Any
) -> dict[str, Any]:
    param = {"name": name, "in": where, "schema": schema, **more}
    if description:
        param["description"] = description
    return param


_JOB_ID = _param("job_id", "path", {"type": "string", "pattern": JOB_ID_PATTERN}, required=True)
_UNAUTHORIZED = Answer(
    "Missing, unknown or revoked bearer token.",
    c.ErrorEnvelope,
    headers={"WWW-Authenticate": {"schema": _TEXT}},
)
# Every authenticated operation may answer it: the token's role lacks the permission.
_FORBIDDEN = Answer("The token's role may not do this (read, submit, admin).", c.ErrorEnvelope)


def _sse(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "event": {"const": name},
            "id": _TEXT,
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
        "required": ["event", "data"],
    }


# One event of GET /events' stream, as a parsed Server-Sent Event (its data is JSON of the shape named).
_SSE_EVENT = {
    "oneOf": [
        _sse("ready", {"type": "object"}),
        _sse("job", {"$ref": _REF.format(name="JobChange")}),
        _sse("reset", {"$ref": _REF.format(name="EventsReset")}),
    ]
}
_TOO_LARGE = Answer("Body over the cap (RECEIVER_MAX_BODY_BYTES).", c.ErrorEnvelope)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        WEBHOOK_PATH,
        "receiveWebhook",
        "OpenRouter's signed webhook: verified, stored durably, then answered",
        public=True,
        body=c.WebhookEvent,
        parameters=(
            _param(
                SIGNATURE_HEADER, "header", _TEXT, "`t=<unix seconds>,v1=<hex HMAC-SHA256>`", required=True
            ),
            _param(IDEMPOTENCY_HEADER, "header", _TEXT, "`<job id>-<status>`", required=False),
        ),
        answers={
            200: Answer("Stored (or already stored).", c.DeliveryAnswer),
            401: Answer(
                "Not verified: `reason` says why (missing, malformed, too_old, mismatch, ...).",
                c.ErrorEnvelope,
            ),
            413: Answer("Body over the cap.", c.ErrorEnvelope),
            503: Answer("Could not be stored; retry later.", c.ErrorEnvelope),
        },
    ),
    Operation(
        "get",
        "/jobs",
        "listJobs",
        "Job records, newest first, with cursor pagination",
        parameters=(
            _param("status", "query", {"type": "string", "enum": list(ALL_STATUSES)}),
            _param("model", "query", _TEXT),
            _param("since", "query", _TEXT, "unix seconds or ISO-8601; created at or after"),
            _param("until", "query", _TEXT, "unix seconds or ISO-8601; created before"),
            _param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": c.MAX_LIMIT, "default": 50}
            ),
            _param("cursor", "query", _TEXT, "`next_cursor` of the previous page"),
        ),
        answers={
            200: Answer("A page of jobs.", c.JobList),
            400: Answer("A bad filter, limit or cursor.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
        },
    ),
    Operation(
        "post",
        "/jobs",
        "submitOrRegisterJob",
        "Submit a job through the receiver, exactly once per Idempotency-Key (OpenRouter's POST /videos "
        "body, without callback_url); or, with a body of {id, model, prompt}, track a job submitted "
        "elsewhere (idempotent). Either way the polling fallback covers the job from the start",
        body=(c.SubmitRequest, c.Registration),
        parameters=(
            _param(
                "Idempotency-Key",
                "header",
                {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
                "required to submit: the same key with the same body answers the same submission, "
                "with another body 409",
            ),
        ),
        answers={
            201: Answer("Submitted now (a Submission), or newly tracked (a Job).", (c.Submission, c.Job)),
            200: Answer(
                "The same key again (a Submission), or already known (a Job).", (c.Submission, c.Job)
            ),
            202: Answer(
                "The outcome upstream is unknown (never resubmitted; the job's webhook ties it back), or "
                "another replica's submit under this key is still under way.",
                c.Submission,
            ),
            400: Answer(
                "Not a JSON object, a bad field, a missing Idempotency-Key, or a value the model's "
                "catalog entry rules out (`field`, `allowed`); a `notify_url` the receiver may not POST "
                "to (a private address, credentials); for a registration, a bad id or a job OpenRouter "
                "does not know.",
                c.ErrorEnvelope,
            ),
            401: _UNAUTHORIZED,
            402: Answer(
                "Over a spending cap (the cap, its period, the spend so far and this job's estimate; "
                "nothing was kept: retry when it fits), or OpenRouter refused the submit (as every retry "
                "of its key): `submission`.",
                c.ErrorEnvelope,
            ),
            404: Answer("OpenRouter refused the submit (404).", c.ErrorEnvelope),
            409: Answer("The Idempotency-Key was used for another request.", c.ErrorEnvelope),
            413: _TOO_LARGE,
            422: Answer("OpenRouter refused the submit (422).", c.ErrorEnvelope),
            429: Answer("OpenRouter refused the submit (rate limit; final for this key).", c.ErrorEnvelope),
            502: Answer("OpenRouter refused the receiver's own API key.", c.ErrorEnvelope),
            503: Answer(
                "Nothing was sent and nothing kept: the catalog or OpenRouter unreachable, no "
                "RECEIVER_PUBLIC_URL, the store down, or a `notify_url` given and no "
                "RECEIVER_NOTIFY_SECRET to sign with. Retry with the same key.",
                c.ErrorEnvelope,
            ),
        },
    ),
    Operation(
        "get",
        "/submissions/{ref}",
        "getSubmission",
        "A submission made through the receiver, by its id or its Idempotency-Key",
        parameters=(
            _param("ref", "path", _TEXT, "submission id (sub_...) or Idempotency-Key", required=True),
        ),
        answers={
            200: Answer("The submission (with its job's record once it has one).", c.Submission),
            401: _UNAUTHORIZED,
            404: Answer("No such submission.", c.ErrorEnvelope),
        },
    ),
    Operation(
        "get",
        "/usage",
        "getUsage",
        "Spend by UTC day, model and token (estimated, actual, counted), and the spending caps with "
        "what remains",
        parameters=(
            _param("since", "query", _TEXT, "unix seconds or ISO-8601 (default: the current UTC month)"),
            _param("until", "query", _TEXT, "unix seconds or ISO-8601; before"),
            _param(
                "days", "query", {"type": "integer", "minimum": 1, "maximum": 3660}, "the last N UTC days"
            ),
        ),
        answers={
            200: Answer("The usage.", c.Usage),
            400: Answer("A bad since, until or days.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
        },
    ),
    Operation(
        "get",
        "/jobs/{job_id}",
        "getJob",
        "One job record with its outputs and events; with `wait`, as soon as its status or an output's state changes",
        parameters=(
            _JOB_ID,
            _param(
                "wait",
                "query",
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT},
                "Long-poll: hold the request until the job's status or an output's state changes, at most "
                "this many seconds, then answer the record as it is (at once if it can change no more)",
            ),
        ),
        answers={
            200: Answer(
                "The record.",
                c.Job,
                headers={
                    WAIT_RESULT: {
                        "description": "With `wait`: why it was answered",
                        "schema": {"type": "string", "enum": ["changed", "settled", "timeout", "closing"]},
                    }
                },
            ),
            400: Answer("A bad wait.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
            404: Answer("No such job (or it was deleted while waited on).", c.ErrorEnvelope),
        },
    ),
    Operation(
        "delete",
        "/jobs/{job_id}",
        "deleteJob",
        "Admin: delete a job record, its events and outputs, and its video files",
        parameters=(_JOB_ID,),
        answers={
            200: Answer("Deleted; what was removed.", c.Deleted),
            401: _UNAUTHORIZED,
            404: Answer("No such job.", c.ErrorEnvelope),
        },
    ),
    Operation(
        "get",
        "/jobs/{job_id}/content",
        "getJobContent",
        "A downloaded output (single Range requests supported)",
        parameters=(
            _JOB_ID,
            _param("index", "query", {"type": "integer", "minimum": 0, "maximum": c.MAX_INDEX, "default": 0}),
            # 1: a presigned URL (S3 content store only), 0: streamed; unset: RECEIVER_CONTENT_REDIRECT
            _param("redirect", "query", {"type": "string", "enum": ["0", "1"]}),
            _param("Range", "header", _TEXT),
        ),
        answers={
            200: Answer("The MP4.", media={"video/mp4": _BINARY}),
            206: Answer("Part of the MP4.", media={"video/mp4": _BINARY}),
            307: Answer(
                "With the S3 store and redirect=1 (or RECEIVER_CONTENT_REDIRECT=1): a presigned URL."
            ),
            400: Answer(
                "A bad index, redirect or Range header.", c.ErrorEnvelope, media={"text/plain": _TEXT}
            ),
            401: _UNAUTHORIZED,
            404: Answer(
                "No such job; the job failed; it has no such output; or the output is not downloaded yet "
                "(or was deleted): the message says which.",
                c.ErrorEnvelope,
            ),
            416: Answer("Range not satisfiable.", media={"text/plain": _TEXT}),
        },
    ),
    Operation(
        "get",
        "/deliveries",
        "listDeliveries",
        "Stored webhook deliveries (never their bodies or headers), newest first, with cursor pagination",
        parameters=(
            _param(
                "state",
                "query",
                {"type": "string", "enum": ["pending", "failed", "applied", "unprocessed"]},
                "`unprocessed`: failed or pending",
            ),
            _param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": c.MAX_LIMIT, "default": 50}
            ),
            _param("cursor", "query", _TEXT, "`next_cursor` of the previous page"),
        ),
        answers={
            200: Answer("A page of deliveries.", c.DeliveryList),
            400: Answer("A bad state, limit or cursor.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
        },
    ),
    Operation(
        "post",
        "/deliveries/reprocess",
        "reprocessDeliveries",
        "Apply stored deliveries not applied (failed or pending): all, or the ids given",
        body=c.Reprocess,
        body_required=False,
        answers={
            200: Answer(
                "What was applied, and what is still unprocessed (with the reason).", c.ReprocessResult
            ),
            400: Answer("Not a JSON object, or bad ids.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
            413: _TOO_LARGE,
        },
    ),
    Operation(
        "get",
        "/notifications",
        "listNotifications",
        "Signed notifications to apps (the outbox), newest first, with cursor pagination. Each is POSTed "
        "to its URL as a NotificationEnvelope (Standard Webhooks headers), retried, then dead",
        parameters=(
            _param("state", "query", {"type": "string", "enum": ["pending", "delivered", "dead"]}),
            _param("job_id", "query", _TEXT, "Only this job's"),
            _param(
                "limit", "query", {"type": "integer", "minimum": 1, "maximum": c.MAX_LIMIT, "default": 50}
            ),
            _param("cursor", "query", _TEXT, "`next_cursor` of the previous page"),
        ),
        answers={
            200: Answer("A page of notifications.", cn.NotificationList, carries=(cn.NotificationEnvelope,)),
            400: Answer("A bad state, limit or cursor.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
        },
    ),
    Operation(
        "post",
        "/notifications/{notification_id}/retry",
        "retryNotification",
        "Send a notification again: back to pending, due now, attempts reset, the same webhook-id",
        parameters=(_param("notification_id", "path", _TEXT, "msg_...", required=True),),
        answers={
            200: Answer("Pending again.", cn.RetryNotifications),
            401: _UNAUTHORIZED,
            404: Answer("No such notification.", c.ErrorEnvelope),
            409: Answer("Being sent right now; try again.", c.ErrorEnvelope),
        },
    ),
    Operation(
        "get",
        "/events",
        "streamEvents",
        "Job changes as Server-Sent Events (`ready`, `job`: a JobChange, `reset`: an EventsReset), resumable",
        parameters=(
            _param("Last-Event-ID", "header", _TEXT, "Resume after this event id (EventSource sends it)"),
            _param(
                "since", "query", _TEXT, "Resume after this event id (for clients that cannot set headers)"
            ),
        ),
        answers={
            200: Answer(
                "An endless text/event-stream; each `job` event's data is a JobChange, a `reset`'s an "
                "EventsReset (see components); only the last event of a batch carries an `id:`.",
                media={"text/event-stream": _SSE_EVENT},
                carries=(c.JobChange, c.EventsReset),
            ),
            400: Answer("A cursor this API did not send.", c.ErrorEnvelope),
            401: _UNAUTHORIZED,
            503: Answer(
                "Too many event streams open on this replica; retry after Retry-After.",
                c.ErrorEnvelope,
                headers={"Retry-After": {"schema": _TEXT}},
            ),
        },
    ),
    Operation("get", "/healthz", "healthz", "Alive", public=True, answers={200: Answer("Alive.", c.Health)}),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "A delivery can be stored and the disk is above the floor",
        public=True,
        answers={200: Answer("Ready.", c.Readiness), 503: Answer("Not ready.", c.Readiness)},
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus text exposition",
        answers={200: Answer("Counters and gauges.", media={"text/plain": _TEXT}), 401: _UNAUTHORIZED},
    ),
    Operation(
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        public=True,
        answers={200: Answer("The OpenAPI document.", media={"application/json": {"type": "object"}})},
    ),
)


def _build(operations: tuple[Operation, ...]) -> dict[str, Any]:
    shapes = sorted(
        {
            t
            for op in operations
            for t in (
                *_bodies(op),
                *(k for a in op.answers.values() for k in (*_kinds(a.shape), *a.carries)),
            )
        },
        key=lambda t: t.__name__,
    )
    refs, schemas = msgspec.json.schema_components(shapes, ref_template=_REF)
    ref_of = dict(zip(shapes, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        answers = op.answers if op.public else {403: _FORBIDDEN, **op.answers}
        spec: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "security": [] if op.public else [{"bearerAuth": []}],
            "responses": {str(code): _answer(a, ref_of, schemas) for code, a in sorted(answers.items())},
        }
        if op.parameters:
            spec["parameters"] = list(op.parameters)
        if op.body is not None:
            spec["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": _schema(op.body, ref_of)}},
            }
        paths.setdefault(op.path, {})[op.method] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "openrouter-video receiver",
            "version": "1",
            "description": "Receives OpenRouter's signed video webhooks, keeps job records and downloaded "
            "videos, and answers queries about them. Everything but the webhook, /healthz, /readyz and this "
            "document needs `Authorization: Bearer <token>`: RECEIVER_API_TOKEN (admin), or a named token "
            "(`openrouter-video tokens create`) whose role is read, submit or admin; a read or submit "
            "token sees its own jobs only (another app's job is a 404).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _kinds(shape: type | tuple[type, ...] | None) -> tuple[type, ...]:
    if shape is None:
        return ()
    return shape if isinstance(shape, tuple) else (shape,)


def _bodies(op: Operation) -> tuple[type, ...]:
    return _kinds(op.body)


def _schema(
    shape: type | tuple[type, ...], ref_of: dict[type, dict[str, Any]], schemas: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One shape's reference; several: any of them, each written out (Schemathesis checks an answer
    against an anyOf of references as if the first were the only one)."""
    kinds = _kinds(shape)
    if len(kinds) == 1:
        return ref_of[kinds[0]]
    return {"anyOf": [schemas[k.__name__] if schemas else ref_of[k] for k in kinds]}


def _answer(answer: Answer, ref_of: dict[type, dict[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    content = (
        {}
        if answer.shape is None
        else {"application/json": {"schema": _schema(answer.shape, ref_of, schemas)}}
    )
    content.update({media: {"schema": schema} for media, schema in answer.media.items()})
    spec: dict[str, Any] = {"description": answer.description, "content": content}
    if answer.headers:
        spec["headers"] = answer.headers
    return spec


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    return _build(OPERATIONS)


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    return copy.deepcopy(_document())


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(_document())
