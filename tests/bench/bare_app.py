"""The baseline of benchmark 1: a bare Starlette endpoint that only reads the body and answers 200.

Served with the same uvicorn options as `openrouter-video serve` (receiver/cli.py), so the
difference to the receiver is verification, the durable commit and the receiver's own code:

    python -m tests.bench.bare_app --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def webhook(request: Request) -> Response:
    await request.body()
    return JSONResponse({"received": True, "outcome": "accepted"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/webhooks/openrouter", webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Keep in step with `serve` in receiver/cli.py.
    trusted = "127.0.0.1,::1"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        proxy_headers=True,
        forwarded_allow_ips=trusted,
        timeout_graceful_shutdown=30,
        server_header=False,
    )


if __name__ == "__main__":
    main()
