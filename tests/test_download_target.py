"""`AsyncOpenRouterVideo.download(job, dest=<AsyncDownloadTarget>)`: a download that is not a file.

Over real HTTP: the simulator for real videos, `FaultyUpstream` (raw sockets) for bodies cut short,
unsized, not a video, or stalled. The target here keeps the bytes in memory and records every call,
so each test can check what reached it and in which order: commit only after every check passed,
abort on every failure, a retry starting over from byte 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import RunningSimulator
from upstream_faults import KEY, FaultyUpstream, mp4

from openrouter_video import (
    AsyncDownloadTarget,
    AsyncOpenRouterVideo,
    DownloadError,
    DownloadTooSlow,
    OpenRouterVideo,
    TransportError,
    ValidationError,
)
from openrouter_video._mp4check import Mp4Walker, mp4_structure_problem
from openrouter_video._simulator._mp4 import sample_size

VEO = "google/veo-3.1"
MiB = 1024 * 1024


class MemoryTarget:
    """Keeps the bytes of the current attempt; records each call as (name, detail)."""

    def __init__(self, *, fail_write_at: int | None = None, fail_commit: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.data = bytearray()
        self.committed: bytes | None = None
        self.fail_write_at = fail_write_at
        self.fail_commit = fail_commit
        self.first_write = asyncio.Event()
        self.writing = 0
        self.most_writing = 0

    async def start(self, expected: int | None, content_type: str | None) -> None:
        self.calls.append(("start", (expected, content_type)))
        self.data = bytearray()

    async def write(self, chunks: list[bytes]) -> None:
        self.writing += 1
        self.most_writing = max(self.most_writing, self.writing)
        try:
            size = sum(map(len, chunks))
            self.calls.append(("write", size))
            if self.fail_write_at is not None and len(self.names("write")) >= self.fail_write_at:
                raise OSError("the target's storage failed")
            await asyncio.sleep(0)
            self.data += b"".join(chunks)
            self.first_write.set()
        finally:
            self.writing -= 1

    async def commit(self, size: int, sha256: str) -> str:
        self.calls.append(("commit", (size, sha256)))
        if self.fail_commit:
            raise OSError("the target could not complete")
        assert size == len(self.data) and sha256 == hashlib.sha256(self.data).hexdigest()
        self.committed = bytes(self.data)
        return "mem://video"

    async def abort(self) -> None:
        self.calls.append(("abort", len(self.data)))
        self.data = bytearray()

    def names(self, name: str | None = None) -> list[str]:
        return [n for n, _ in self.calls if name is None or n == name]

    def attempts(self) -> list[str]:
        """The calls with consecutive writes folded: e.g. ['start', 'write', 'abort', 'start', ...]."""
        folded: list[str] = []
        for name in self.names():
            if not (name == "write" and folded and folded[-1] == "write"):
                folded.append(name)
        return folded


def client(base: str, api_key: str = KEY, **options: Any) -> AsyncOpenRouterVideo:
    options.setdefault("retry_initial", 0.01)
    options.setdefault("retry_cap", 0.05)
    return AsyncOpenRouterVideo(api_key=api_key, base_url=base, **options)


def admin_output(sim: RunningSimulator, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sim.admin_url}/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()["outputs"][0]
    return output


def test_the_target_is_a_public_runtime_checkable_protocol() -> None:
    import openrouter_video

    assert "AsyncDownloadTarget" in openrouter_video.__all__
    assert isinstance(MemoryTarget(), AsyncDownloadTarget)
    assert not isinstance(io.BytesIO(), AsyncDownloadTarget)  # a binary stream stays a stream


def test_a_simulator_video_streams_into_the_target_checked_and_hashed(simulator: RunningSimulator) -> None:
    target = MemoryTarget()
    progress: list[tuple[int, int | None]] = []

    async def scenario() -> Any:
        async with client(simulator.api_base, simulator.api_key) as api:
            job = await api.wait(
                await api.submit("a fox [sim:bytes=3000000]", model=VEO, duration=4), first_interval=0.02
            )
            return job, await api.download(job, dest=target, progress=lambda n, t: progress.append((n, t)))

    job, result = asyncio.run(scenario())
    expected = admin_output(simulator, job.id)
    assert result.path == "mem://video" and result.content_type == "video/mp4"
    assert result.bytes == expected["size"] == 3_000_000
    assert result.sha256 == expected["sha256"] == hashlib.sha256(target.committed or b"").hexdigest()
    assert target.attempts() == ["start", "write", "commit"]
    assert target.calls[0] == ("start", (3_000_000, "video/mp4"))
    writes = [size for name, size in target.calls if name == "write"]
    assert sum(writes) == 3_000_000 and len(writes) >= 3
    assert all(size <= MiB + 256 * 1024 for size in writes)  # ~1 MiB batches, never the whole video
    assert progress[-1] == (3_000_000, 3_000_000)


def test_a_close_delimited_mp4_is_committed_only_when_its_boxes_add_up() -> None:
    with FaultyUpstream() as upstream:
        whole_job, whole = upstream.plan("jobUnsized1", "unsized")
        cut_job, _ = upstream.plan("jobUnsized2", "unsized-cut")
        whole_target, cut_target = MemoryTarget(), MemoryTarget()

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                result = await api.download(whole_job, dest=whole_target)
                assert result.sha256 == hashlib.sha256(whole).hexdigest() and result.bytes == len(whole)
                with pytest.raises(DownloadError, match="incomplete MP4"):
                    await api.download(cut_job, dest=cut_target)

        asyncio.run(scenario())
    assert whole_target.committed == whole
    assert cut_target.committed is None and cut_target.attempts() == ["start", "write", "abort"]


def test_a_non_video_never_reaches_the_target() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobHtml1", "html")
        target = MemoryTarget()

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                with pytest.raises(DownloadError, match="not a video"):
                    await api.download(job, dest=target)

        asyncio.run(scenario())
    assert target.names("write") == [] and target.committed is None
    assert target.names("abort")  # what `start` prepared is released


def test_a_body_shorter_than_its_length_is_retried_from_byte_0() -> None:
    with FaultyUpstream() as upstream:
        job, body = upstream.plan("jobShort1", "short", "whole", size=3 * MiB)
        target = MemoryTarget()

        async def scenario() -> Any:
            async with client(upstream.api_base) as api:
                return await api.download(job, dest=target)

        result = asyncio.run(scenario())
        assert upstream.hits["jobShort1"] == 2
    assert target.attempts() == ["start", "write", "abort", "start", "write", "commit"]
    assert [detail for name, detail in target.calls if name == "start"] == [(len(body), "video/mp4")] * 2
    assert target.committed == body and result.sha256 == hashlib.sha256(body).hexdigest()


def test_a_length_mismatch_that_persists_is_never_committed() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobShort2", "short", size=3 * MiB)
        target = MemoryTarget()

        async def scenario() -> None:
            async with client(upstream.api_base, max_retries=2) as api:
                with pytest.raises(TransportError):
                    await api.download(job, dest=target)

        asyncio.run(scenario())
        assert upstream.hits["jobShort2"] == 3
    assert target.committed is None and "commit" not in target.names()
    assert len(target.names("start")) == len(target.names("abort")) == 3


def test_a_stalled_download_is_cut_as_too_slow_and_aborted() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobStall1", "stall", size=200_000)
        target = MemoryTarget()

        async def scenario() -> None:
            async with client(upstream.api_base, download_min_rate=20_000, download_rate_grace=0.5) as api:
                with pytest.raises(DownloadTooSlow):
                    await api.download(job, dest=target)

        asyncio.run(scenario())
    assert target.names()[0] == "start" and target.names()[-1] == "abort"
    assert "commit" not in target.names()


def test_cancelling_the_download_aborts_the_target_after_a_partial_write() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobStall2", "stall", size=8 * MiB)
        target = MemoryTarget()

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                task = asyncio.ensure_future(api.download(job, dest=target))
                await asyncio.wait_for(target.first_write.wait(), 20)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(scenario())
    assert target.attempts() == ["start", "write", "abort"]
    aborted_with = target.calls[-1][1]
    assert aborted_with > 0  # the abort came after bytes had been written


def test_a_failing_target_is_not_retried_and_its_error_propagates() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobTargetFails", "whole", size=4 * MiB)
        target = MemoryTarget(fail_write_at=2)

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                with pytest.raises(OSError, match="storage failed"):
                    await api.download(job, dest=target)

        asyncio.run(scenario())
        assert upstream.hits["jobTargetFails"] == 1
    assert target.attempts() == ["start", "write", "abort"] and target.committed is None


def test_a_failed_commit_propagates_and_the_attempt_is_aborted() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobCommitFails", "whole")
        target = MemoryTarget(fail_commit=True)

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                with pytest.raises(OSError, match="could not complete"):
                    await api.download(job, dest=target)

        asyncio.run(scenario())
    assert target.attempts() == ["start", "write", "commit", "abort"]


def test_writes_are_awaited_one_at_a_time() -> None:
    class SlowTarget(MemoryTarget):
        async def write(self, chunks: list[bytes]) -> None:
            await asyncio.sleep(0.01)  # a slow store: the download must wait for it, not pile up batches
            await super().write(chunks)

    with FaultyUpstream() as upstream:
        job, body = upstream.plan("jobSlowTarget", "whole", size=6 * MiB)
        target = SlowTarget()

        async def scenario() -> None:
            async with client(upstream.api_base) as api:
                await api.download(job, dest=target)

        asyncio.run(scenario())
    assert target.committed == body and target.most_writing == 1


def test_the_sync_client_refuses_a_target_before_any_request() -> None:
    with FaultyUpstream() as upstream:
        job, _ = upstream.plan("jobSync1", "whole")
        with (
            OpenRouterVideo(KEY, upstream.api_base) as api,
            pytest.raises(ValidationError, match="AsyncOpenRouterVideo"),
        ):
            api.download(job, dest=MemoryTarget())  # type: ignore[arg-type]
        assert upstream.hits["jobSync1"] == 0


# -- the incremental MP4 check ------------------------------------------------------------------


def walk(data: bytes, cuts: list[int]) -> str | None:
    walker = Mp4Walker()
    last = 0
    for cut in sorted(cuts) + [len(data)]:
        walker.feed(data[last:cut])
        last = max(last, cut)
    return walker.problem()


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(sample_size() + 8, 120_000),
    cut=st.floats(0, 1),
    splits=st.lists(st.integers(0, 120_000), max_size=12),
)
def test_the_streaming_mp4_check_says_what_the_file_check_says(
    size: int, cut: float, splits: list[int]
) -> None:
    data = mp4("jobWalk", size)[: int(size * cut)]
    cuts = [s for s in splits if s <= len(data)]
    assert walk(data, cuts) == mp4_structure_problem(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00",
        struct.pack(">I4s", 4, b"ftyp"),  # impossible size
        struct.pack(">I4s", 8, b"\x01\x02\x03\x04"),  # not a box type
        struct.pack(">I4sQ", 1, b"mdat", 8),  # impossible 64-bit size
        struct.pack(">I4s", 1, b"mdat") + b"\x00\x00",  # cut inside the 64-bit size
        struct.pack(">I4s", 8, b"moov") + struct.pack(">I4s", 0, b"mdat") + b"x" * 9,  # runs to the end
        struct.pack(">I4s", 8, b"moov") + struct.pack(">I4sQ", 1, b"mdat", 20) + b"y" * 4,
    ],
)
def test_the_streaming_mp4_check_agrees_on_odd_boxes(data: bytes) -> None:
    expected = mp4_structure_problem(io.BytesIO(data), len(data))
    assert walk(data, []) == expected
    assert walk(data, list(range(len(data)))) == expected  # fed one byte at a time
