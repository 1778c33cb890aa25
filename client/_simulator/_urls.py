"""URLs the simulator hands out: polling, key-protected content, and signed key-free storage URLs.

Signed URLs carry `expires` (unix seconds) and `sig` = HMAC-SHA256 over `<job id>/<index>/<expires>`
with a random per-app key, so they can't be forged, edited or extended.
"""

from __future__ import annotations

import hmac
import secrets
import time

from ._jobs import Job

API_PREFIX = "/api/v1"


class UrlSigner:
    """Signs and checks storage URLs with a key that lives only in this process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def signature(self, job_id: str, index: int, expires: int) -> str:
        return hmac.digest(self._key, f"{job_id}/{index}/{expires}".encode(), "sha256").hex()

    def path(self, job_id: str, index: int, expires: int) -> str:
        return f"/storage/{job_id}/{index}.mp4?expires={expires}&sig={self.signature(job_id, index, expires)}"

    def problem(
        self, job_id: str, index: int, expires: str | None, sig: str | None, now: float | None = None
    ) -> str | None:
        """Why the signed URL is refused, or None if it is valid."""
        if not expires or not sig or not expires.isascii() or not expires.isdigit():
            return "Signed URL is missing or has a malformed expires/sig parameter"
        expected = self.signature(job_id, index, int(expires))
        if not (sig.isascii() and hmac.compare_digest(expected, sig.lower())):
            return "Signed URL signature does not match"
        if (time.time() if now is None else now) >= int(expires):
            return "Signed URL has expired"
        return None


def polling_url(job: Job, style: str) -> str:
    path = f"{API_PREFIX}/videos/{job.id}"
    return path if style == "relative" else job.base_url + path


def unsigned_urls(job: Job) -> list[str]:
    return [f"{job.base_url}{API_PREFIX}/videos/{job.id}/content?index={i}" for i in range(job.outputs)]


def signed_urls(job: Job, signer: UrlSigner) -> list[str]:
    return [job.base_url + signer.path(job.id, i, job.expires_at) for i in range(job.outputs)]
