"""How the receiver is served: uvicorn with an HTTP protocol that caps headers and times out slow clients.

uvicorn's httptools protocol has no limit on the size or number of request headers and no timeout
while a request is arriving: one client can make it buffer a 16 MiB header block, or hold a
connection forever by sending half a header, a byte of the body, or nothing (slowloris). The
receiver binds every interface in its container, so the proxy in front is not the only way in.
`GuardedHttpToolsProtocol` adds both limits at the protocol level, before the app sees a request.

`uvicorn_options(settings)` is the one place the receiver's uvicorn configuration is built;
`openrouter-video serve` and the tests use it. Running `uvicorn --factory openrouter_video.receiver.app:create_app`
directly skips it and has NONE of these limits: use `openrouter-video serve`.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import error_bytes
from .settings import Settings

# uvicorn's own default, stated here: idle keep-alive connections between requests are closed after it.
KEEP_ALIVE_TIMEOUT = 5.0

# Where the connection is: between requests (no deadline of ours), in the request line and headers,
# or in the body (until the parser has the whole message).
_IDLE, _HEADERS, _BODY = "idle", "headers", "body"
# A whole body must arrive within this many body timeouts (30 s by default; bodies are at most 1 MiB).
BODY_TOTAL_FACTOR = 3


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol plus: header block size and count caps (431), header and body deadlines (408).

    The header bytes are counted as they arrive and the parser is never fed more than the cap, so an
    oversize block is refused after the cap, not after it has been buffered. The header deadline runs
    from the request's first byte (from the connection's start for a fresh one); the body must keep
    arriving (no gap longer than `body_timeout`) and be whole within `BODY_TOTAL_FACTOR` times it (a
    byte every few seconds cannot hold a connection for long), except while the server itself has
    stopped reading.
    """

    max_header_bytes = 64 * 1024
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        self._header_bytes = 0
        self._header_count = 0
        self._header_started = 0.0
        self._body_seen = 0.0
        self._body_started = 0.0
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_headers()  # a connection that never sends a byte gets the header deadline too
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase == _IDLE:
            self._begin_headers()
        if self._phase == _HEADERS:
            allowed = self.max_header_bytes - self._header_bytes
            over = len(data) > allowed
            head = data[:allowed] if over else data
            self._header_bytes += len(head)
            if head:
                super().data_received(head)
            if self._refused:
                return
            if over:
                if self._phase == _HEADERS:
                    self._refuse(431, f"request header block larger than {self.max_header_bytes} bytes")
                    return
                if not self.transport.is_closing():
                    super().data_received(data[allowed:])
        else:
            super().data_received(data)
        if self._phase == _BODY:
            self._body_seen = self.loop.time()
        if self._phase != _IDLE and not self._refused:
            self._arm()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal stopped the parser with an error; it has answered already
            super().send_400_response(msg)

    # Parser callbacks: they move the phase along.

    def on_message_begin(self) -> None:
        if self._phase != _HEADERS:  # a pipelined request starting inside an earlier read
            self._begin_headers()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refuse(431, f"more than {self.max_headers} request headers")
            raise _Refused  # stops the parser; send_400_response stays quiet
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._body_started = self._body_seen = self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        super().on_message_complete()

    # Deadlines: one timer, re-armed from its own callback; moving it on every read would cost more.

    def _begin_headers(self) -> None:
        self._phase = _HEADERS
        self._header_bytes = self._header_count = 0
        self._header_started = self.loop.time()

    def _due(self) -> float | None:
        if self._phase == _HEADERS:
            return self._header_started + self.header_timeout
        if self._phase == _BODY:
            return min(
                self._body_seen + self.body_timeout,
                self._body_started + self.body_timeout * BODY_TOTAL_FACTOR,
            )
        return None

    def _arm(self) -> None:
        due = self._due()
        if due is None:
            return
        if self._deadline is not None:
            if self._deadline.when() <= due:
                return  # it fires first and re-arms for what is left
            self._deadline.cancel()
        self._deadline = self.loop.call_at(due, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == _BODY and (
            self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue)
        ):
            # The server is not reading (the app has not taken the body yet): not the client's delay.
            now = self.loop.time()
            self._body_started += now - self._body_seen
            self._body_seen = now
        due = self._due()
        if due is None:
            return
        if self.loop.time() < due:
            self._arm()
            return
        if self._phase == _HEADERS:
            self._refuse(408, f"request headers not received within {self.header_timeout:g}s")
        elif self.loop.time() >= self._body_seen + self.body_timeout:
            self._refuse(408, f"request body stalled for {self.body_timeout:g}s")
        else:
            total = self.body_timeout * BODY_TOTAL_FACTOR
            self._refuse(408, f"request body not received whole within {total:g}s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` unless another response is under way, and close: nothing more is read."""
        self._refused = True
        cycle = self.cycle
        if self._phase == _HEADERS:  # self.cycle is the previous request's, if any
            # A connection that sent nothing asked nothing: it is closed without an answer.
            can_answer = self._header_bytes > 0 and (cycle is None or cycle.response_complete)
        else:
            can_answer = cycle is not None and not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() sees a disconnect; its send() goes nowhere
            cycle.message_event.set()
        self._phase = _IDLE
        if can_answer and not self.transport.is_closing():
            body = error_bytes(status, message)
            head = [STATUS_LINE[status]]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        self.transport.close()


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that has been refused."""


class ReceiverServer(uvicorn.Server):
    """uvicorn's server, which first ends the dashboard's live streams, the job event streams and the
    long-polls when it shuts down: they end late or never by themselves, and uvicorn would wait for
    them until its graceful timeout."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        from .ui.live import end_streams
        from .watch import end_waits

        end_streams()
        end_waits()
        await super().shutdown(sockets)


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this receiver's limits (uvicorn builds one instance per connection)."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "max_headers": settings.max_headers,
            "header_timeout": settings.header_timeout,
            "body_timeout": settings.body_timeout,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config options the receiver's limits need; the caller adds host, port, logging."""
    return {
        "http": guarded_protocol(settings),
        "ws": "none",  # the receiver has no WebSocket routes: no upgrade path to attack
        "timeout_keep_alive": KEEP_ALIVE_TIMEOUT,
    }
