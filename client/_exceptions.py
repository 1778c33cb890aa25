"""Every error this package raises, in one tree.

    OpenRouterVideoError                 base of all; `.job_id` where a job is known
    ├── ValidationError                  bad input caught before any request was sent (`.field`, `.value`, `.allowed`)
    ├── WebhookVerificationError         a webhook failed verification (`.reason`, one of VERIFY_REASONS)
    ├── WebhookPayloadError              a correctly signed webhook whose body is not a valid event
    ├── TransportError                   no HTTP answer (`.request_sent` False when provably never sent, `.refused`)
    ├── SubmissionOutcomeUnknown         a submit may or may not have created a (billed) job
    ├── ResponseFormatError              OpenRouter answered, but not with what the API documents
    ├── DownloadError                    the content was not a video, or not the announced size
    │   └── DownloadTooSlow              the content arrived below the minimum rate, or past its deadline
    ├── InsufficientStorageError         not enough free disk for the output (`.needed`, `.free` bytes)
    ├── JobNotFinished                   `wait()` reached its deadline; the job still runs (`.status`)
    ├── JobUnsuccessful                  the job ended failed/cancelled/expired (`.job`, `.error`)
    │   ├── JobFailed
    │   ├── JobCancelled
    │   └── JobExpired
    └── APIError                         an error status (`.status_code`, `.code`, `.message`, `.retry_after`)
        ├── InvalidRequestError          400
        ├── AuthenticationError          401
        ├── InsufficientCreditsError     402
        ├── PermissionDeniedError        403
        ├── NotFoundError                404
        ├── OutputGoneError              409, 410: the output is no longer available
        ├── IdempotencyKeyReused         409 from the receiver's submit: the key was used for another request
        ├── PayloadTooLargeError         413
        ├── RateLimitError               429 (`.retry_after` seconds, or None)
        └── UpstreamError                5xx and any other unexpected status

httpx exceptions are translated into these in exactly one place, `openrouter_video._base.translate_transport_error`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import VideoJob

__all__ = [
    "APIError",
    "AuthenticationError",
    "DownloadError",
    "DownloadTooSlow",
    "InsufficientCreditsError",
    "IdempotencyKeyReused",
    "InsufficientStorageError",
    "InvalidRequestError",
    "JobCancelled",
    "JobExpired",
    "JobFailed",
    "JobNotFinished",
    "JobUnsuccessful",
    "NotFoundError",
    "OpenRouterVideoError",
    "OutputGoneError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseFormatError",
    "SubmissionOutcomeUnknown",
    "TransportError",
    "UpstreamError",
    "VERIFY_REASONS",
    "ValidationError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]


class OpenRouterVideoError(Exception):
    """Base of every error raised by this package."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id


class ValidationError(OpenRouterVideoError):
    """A request argument is out of range for the API or the chosen model. Nothing was sent."""

    def __init__(self, field: str, value: Any, message: str, *, allowed: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = allowed


VERIFY_REASONS = ("missing", "malformed", "no_signature", "mismatch", "too_old", "too_new", "empty_secret")


class WebhookVerificationError(OpenRouterVideoError):
    """A webhook could not be verified. `.reason` is machine-readable: one of VERIFY_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in VERIFY_REASONS, reason
        super().__init__(message)
        self.reason = reason


class WebhookPayloadError(OpenRouterVideoError):
    """The signature is valid but the body is not a video webhook event."""


class TransportError(OpenRouterVideoError):
    """No HTTP answer was received (connection refused, timeout, broken connection)."""

    request_sent: bool = True
    refused: bool = False  # the connection was refused: nothing listens at the address


class SubmissionOutcomeUnknown(OpenRouterVideoError):
    """A submit failed in a way that leaves open whether OpenRouter created (and bills) the job.

    Never retried automatically: check your OpenRouter activity (or the webhook receiver)
    before submitting again, or you may pay twice.
    """


class ResponseFormatError(OpenRouterVideoError):
    """OpenRouter answered 2xx with a body that does not match the documented shape."""


class DownloadError(OpenRouterVideoError):
    """The downloaded content is not a video, or is not the size the server announced."""


class DownloadTooSlow(DownloadError):
    """The content arrived slower than the minimum rate for too long, or missed its size-scaled deadline."""


class InsufficientStorageError(OpenRouterVideoError):
    """The destination has too little free space (above the floor the caller keeps) for the output.

    Raised before anything is written when the size is announced, or before the write that would
    cross the floor when it is not. `.needed` and `.free` (above the floor) are in bytes.
    """

    def __init__(self, needed: int, free: int, *, job_id: str | None = None) -> None:
        super().__init__(f"need {needed} bytes, {free} free above the floor", job_id=job_id)
        self.needed = needed
        self.free = free


class JobNotFinished(OpenRouterVideoError):
    """`wait()` reached its deadline while the job was still running. It was not resubmitted."""

    def __init__(self, job_id: str, status: str, waited: float) -> None:
        super().__init__(
            f"job {job_id} is still {status} after {waited:.0f}s; it keeps running upstream "
            f"(check again later with its id, do not resubmit)",
            job_id=job_id,
        )
        self.status = status
        self.waited = waited


class JobUnsuccessful(OpenRouterVideoError):
    """The job reached a terminal status other than completed."""

    def __init__(self, job: VideoJob) -> None:
        detail = f": {job.error}" if job.error else ""
        super().__init__(f"job {job.id} {job.status}{detail}", job_id=job.id)
        self.job = job
        self.status = job.status
        self.error = job.error


class JobFailed(JobUnsuccessful):
    """The job failed upstream (`.error` carries OpenRouter's text, e.g. a content policy violation)."""


class JobCancelled(JobUnsuccessful):
    """The job was cancelled upstream."""


class JobExpired(JobUnsuccessful):
    """The job exceeded OpenRouter's maximum time to live."""


class APIError(OpenRouterVideoError):
    """OpenRouter answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: Any = None,
        metadata: Any = None,
        job_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.status_code = status_code
        self.code = code if code is not None else status_code
        self.metadata = metadata
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (job {self.job_id})" if self.job_id else ""
        return f"{self.status_code} {type(self).__name__}: {self.message}{where}"


class InvalidRequestError(APIError):
    """400: OpenRouter rejected the request's parameters."""


class AuthenticationError(APIError):
    """401: the API key is missing or invalid."""


class InsufficientCreditsError(APIError):
    """402: the account has too few credits for this job."""


class PermissionDeniedError(APIError):
    """403: the key may not do this."""


class NotFoundError(APIError):
    """404: no such job (or model) for this key."""


class OutputGoneError(APIError):
    """409/410: the job's output is no longer (or not yet) available for download."""


class IdempotencyKeyReused(APIError):
    """409 from the receiver's `POST /jobs`: this Idempotency-Key was used for another request; a new
    request needs a new key."""


class PayloadTooLargeError(APIError):
    """413: the request body is too large (e.g. inline images)."""


class RateLimitError(APIError):
    """429: slow down. `.retry_after` is the server's advice in seconds, when given."""


class UpstreamError(APIError):
    """5xx (or an undocumented status): OpenRouter or the provider failed."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: OutputGoneError,
    410: OutputGoneError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}
