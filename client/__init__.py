"""openrouter-video client: OpenRouter's asynchronous video API, its webhook scheme, and a simulator.

    from openrouter_video import OpenRouterVideo
    with OpenRouterVideo() as api:                       # OPENROUTER_API_KEY, OPENROUTER_BASE_URL
        job = api.wait(api.submit("a red fox in snow", model="google/veo-3.1", duration=4))
        api.download(job, dest="fox.mp4")

The error tree is documented in `openrouter_video._exceptions`; cost estimates in `openrouter_video._pricing`;
downloading into something that is not a file (an object store) with `AsyncDownloadTarget` in
`openrouter_video._target`.
"""

from ._async_client import AsyncOpenRouterVideo
from ._base import DEFAULT_BASE_URL, RetryEvent, RetryPolicy, parse_retry_after
from ._client import OpenRouterVideo
from ._exceptions import (
    VERIFY_REASONS,
    APIError,
    AuthenticationError,
    DownloadError,
    DownloadTooSlow,
    IdempotencyKeyReused,
    InsufficientCreditsError,
    InsufficientStorageError,
    InvalidRequestError,
    JobCancelled,
    JobExpired,
    JobFailed,
    JobNotFinished,
    JobUnsuccessful,
    NotFoundError,
    OpenRouterVideoError,
    OutputGoneError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ResponseFormatError,
    SubmissionOutcomeUnknown,
    TransportError,
    UpstreamError,
    ValidationError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from ._pricing import CostEstimate, PriceRow, estimate_cost, price_rows
from ._receiver_api import ReceiverClient
from ._receiver_submit import AsyncReceiverClient
from ._target import AsyncDownloadTarget
from ._types import (
    ALL_STATUSES,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    TERMINAL_STATUSES,
    DownloadResult,
    Usage,
    VideoJob,
    VideoModel,
)
from ._validation import JOB_ID_PATTERN, JOB_ID_RULE, is_loopback_host, is_valid_job_id
from ._webhooks import (
    DEFAULT_TOLERANCE,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_PATH,
    WebhookEvent,
    idempotency_key,
    parse_event,
    sign,
    verify,
    verify_signature,
)

__version__ = "0.1.0"

__all__ = [
    "ALL_STATUSES",
    "CANCELLED",
    "COMPLETED",
    "DEFAULT_BASE_URL",
    "DEFAULT_TOLERANCE",
    "EXPIRED",
    "FAILED",
    "IDEMPOTENCY_HEADER",
    "IN_PROGRESS",
    "JOB_ID_PATTERN",
    "JOB_ID_RULE",
    "PENDING",
    "SIGNATURE_HEADER",
    "TERMINAL_STATUSES",
    "VERIFY_REASONS",
    "WEBHOOK_PATH",
    "APIError",
    "AsyncDownloadTarget",
    "AsyncOpenRouterVideo",
    "AuthenticationError",
    "CostEstimate",
    "DownloadError",
    "DownloadResult",
    "DownloadTooSlow",
    "InsufficientCreditsError",
    "InsufficientStorageError",
    "InvalidRequestError",
    "JobCancelled",
    "JobExpired",
    "JobFailed",
    "JobNotFinished",
    "JobUnsuccessful",
    "NotFoundError",
    "OpenRouterVideo",
    "OpenRouterVideoError",
    "IdempotencyKeyReused",
    "OutputGoneError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PriceRow",
    "RateLimitError",
    "ReceiverClient",
    "AsyncReceiverClient",
    "ResponseFormatError",
    "RetryEvent",
    "RetryPolicy",
    "SubmissionOutcomeUnknown",
    "TransportError",
    "UpstreamError",
    "Usage",
    "ValidationError",
    "VideoJob",
    "VideoModel",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "estimate_cost",
    "idempotency_key",
    "is_loopback_host",
    "is_valid_job_id",
    "parse_event",
    "parse_retry_after",
    "price_rows",
    "sign",
    "verify",
    "verify_signature",
]
