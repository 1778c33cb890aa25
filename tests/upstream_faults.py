"""A fake OpenRouter content endpoint that misbehaves on purpose, over real TCP on loopback.

`FaultyUpstream` answers `GET /api/v1/videos/<job_id>/content` with the simulator's real MP4 for
that job, the way `plan(job_id, ...)` says, one step per request (the last step repeats):

- `whole`:  200, Content-Length, the whole body.
- `short`:  200, Content-Length of the whole, then half the body and the connection closed
            (a length mismatch: the client sees a body cut short).
- `unsized`: 200 with no Content-Length, the whole body, then close (close-delimited).
- `unsized-cut`: the same, cut after half the body (only the MP4's box sizes can tell).
- `html`:   200 text/html, an error page (not a video).
- `stall`:  200, Content-Length, a quarter of the body, then nothing until the client gives up.

Written with raw sockets so that a cut is a real cut (no framework finishes the response for us).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter

from openrouter_video import VideoJob
from openrouter_video._simulator._mp4 import iter_content

KEY = "sk-or-test-key"


def mp4(job_id: str, size: int) -> bytes:
    """The simulator's real MP4 for `job_id`, padded to `size` bytes."""
    return b"".join(bytes(piece) for piece in iter_content(job_id, 0, size))


class FaultyUpstream:
    def __init__(self) -> None:
        self.plans: dict[str, tuple[list[str], bytes]] = {}
        self.hits: Counter[str] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.api_base = f"{self.url}/api/v1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = threading.Event()

    def plan(self, job_id: str, *steps: str, size: int = 200_000) -> tuple[VideoJob, bytes]:
        """Serve `job_id` by `steps`; the completed job to download and its whole body."""
        body = mp4(job_id, size)
        self.plans[job_id] = (list(steps), body)
        return VideoJob.from_api({"id": job_id, "status": "completed"}), body

    def __enter__(self) -> FaultyUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            job_id = request.split(b" ", 2)[1].decode().split("?")[0].split("/")[4]
            steps, body = self.plans[job_id]
            step = steps[min(self.hits[job_id], len(steps) - 1)]
            self.hits[job_id] += 1
            self._respond(conn, step, body)

    def _respond(self, conn: socket.socket, step: str, body: bytes) -> None:
        if step == "html":
            page = b"<html><body>Service temporarily unavailable</body></html>"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(page), page)
            )
            return
        sized = step in ("whole", "short", "stall")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
        if sized:
            head += b"Content-Length: %d\r\n" % len(body)
        conn.sendall(head + b"\r\n")
        if step in ("whole", "unsized"):
            conn.sendall(body)
        elif step in ("short", "unsized-cut"):
            conn.sendall(body[: len(body) // 2])
        elif step == "stall":
            conn.sendall(body[: len(body) // 4])
            self._stop.wait(30)
        else:
            raise ValueError(step)
