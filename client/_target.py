"""Downloading into something that is not a file: `AsyncDownloadTarget`.

    from openrouter_video import AsyncDownloadTarget, AsyncOpenRouterVideo

    async with AsyncOpenRouterVideo() as api:
        result = await api.download(job, dest=my_target)   # any object with these four methods
        result.path                                        # what my_target.commit returned

`AsyncOpenRouterVideo.download(job, index, dest=target)` streams the output into the target with
every check a file download gets, and calls the target in this order:

    start(expected, content_type)      the response headers arrived; no byte yet
    write(chunks)                      zero or more times: the body in order, about 1 MiB per call
    commit(size, sha256) -> str        once, only after EVERY check passed (see below)
    abort()                            instead of commit, on any failure, cancellation included

The checks (the same as for a path): the first bytes are a video (type and MP4/WebM magic); the
size matches the Content-Length, or, with no length announced, the MP4's top-level boxes add up
(checked as the bytes pass: a target is never read back); the body is not empty; the download
stays above the minimum rate (`DownloadTooSlow`). The sha256 is computed on the way and handed
to `commit` (and returned in `DownloadResult.sha256`).

A failed attempt is not resumed: `abort()` is called, and a retry (a transient network error, or
the key-free signed URL failing over to the keyed content URL) calls `start()` again and sends
the whole body from byte 0. So a target must accept `start` after `abort`, and `abort` must be
safe at any point: before any write, after a partial or cancelled write, or twice. Writes are
awaited one at a time (the next batch is being received meanwhile): memory stays bounded if the
target bounds what it buffers, e.g. an upload that waits while too many parts are in flight.

Errors: the download raises what it raises for a file (`DownloadError`, `DownloadTooSlow`,
`TransportError`, `APIError`...). An exception raised by the target itself (its storage failed)
is not retried here: `abort()` is called and the exception propagates unchanged. A `commit` that
raises means nothing was stored; the caller must not record the download as done.

Only `AsyncOpenRouterVideo` accepts a target (the sync client refuses one: a ValidationError).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class AsyncDownloadTarget(Protocol):
    """Where `AsyncOpenRouterVideo.download` streams a video that does not go to a local file."""

    async def start(self, expected: int | None, content_type: str | None) -> None:
        """An attempt begins, from byte 0: `expected` is the announced size (None: unknown),
        `content_type` the response's (not yet checked: the first bytes decide)."""
        ...

    async def write(self, chunks: list[bytes]) -> None:
        """The next bytes of the body, in order (a batch of about 1 MiB, as received)."""
        ...

    async def commit(self, size: int, sha256: str) -> str:
        """Every check passed: make the `size` bytes with this sha256 (hex) durable and visible.
        Returns where they went (e.g. `s3://bucket/key`), for `DownloadResult.path`. Raising
        means nothing was stored."""
        ...

    async def abort(self) -> None:
        """The attempt failed or was cancelled: discard whatever was written. Never raises on its
        own account; safe to call at any point, and more than once."""
        ...
