"""Benchmark 3: webhook signature verification per call, 600-byte body, valid signature.

Ours (`client.verify_signature`) against stripe's `WebhookSignature.verify_header` (the same
`t=...,v1=<hex HMAC-SHA256>` scheme) and standardwebhooks' `Webhook.verify` (json_parse=False, so
it does not parse the body either). Each is timed with `timeit` on the same body: the best of
several repeats of many calls, reported in microseconds per call. The two libraries are installed
into the venv by the benchmark if missing; they are not project dependencies.
"""

from __future__ import annotations

import base64
import json
import time
import timeit
from collections.abc import Callable
from datetime import datetime, timezone

from openrouter_video import SIGNATURE_HEADER, sign, verify_signature

from ._common import Context, Row, ensure_modules

BODY_BYTES = 600
SECRET = "whsec-bench-verify-0123456789"


def body_of(size: int) -> bytes:
    event = {
        "type": "video.generation.completed",
        "created_at": "2026-11-21T10:00:00.000Z",
        "data": {"id": "gen-vid-1763700000-AbCdEfGhIjKlMnOpQrSt", "status": "completed", "pad": ""},
    }
    raw = json.dumps(event, separators=(",", ":"))
    event["data"]["pad"] = "x" * (size - len(raw))
    body = json.dumps(event, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def interleaved_us(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, int]]:
    """Microseconds per call of each function: the best of `repeats` rounds of ~0.25 s each.

    The rounds alternate between the functions, so a burst of load from elsewhere on the machine
    hits all of them alike instead of skewing whichever happened to run at that moment.
    """
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        number, took = timer.autorange()
        numbers[name] = max(number, int(number * 0.25 / max(took, 1e-9)))
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name])
    return {name: (best[name] * 1e6, numbers[name]) for name in fns}


def bench_verify(ctx: Context) -> None:
    failed = ensure_modules(ctx, {"stripe": "stripe", "standardwebhooks": "standardwebhooks"})
    repeats = 5 if ctx.quick else 15
    body = body_of(BODY_BYTES)
    now = int(time.time())
    ctx.command(
        "in-process timeit, best of N interleaved rounds: client.verify_signature(secret, body, headers) vs "
        "stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300) vs "
        "standardwebhooks.Webhook(key).verify(body, headers, json_parse=False); 600-byte body"
    )
    fns: dict[str, Callable[[], object]] = {}

    headers = {SIGNATURE_HEADER: sign(SECRET, body, now)}
    assert verify_signature(SECRET, body, headers) == now
    fns["ours"] = lambda: verify_signature(SECRET, body, headers)

    if "stripe" not in failed:
        import stripe

        stripe_secret = "whsec_bench_verify_0123456789"
        payload = body.decode()
        header = stripe.WebhookSignature.generate_signature_header(payload, stripe_secret, timestamp=now)
        stripe.WebhookSignature.verify_header(payload, header, stripe_secret, tolerance=300)
        fns["stripe"] = lambda: stripe.WebhookSignature.verify_header(
            body, header, stripe_secret, tolerance=300
        )

    if "standardwebhooks" not in failed:
        from standardwebhooks import Webhook

        key = "whsec_" + base64.b64encode(b"bench-verify-secret-0123456789ab").decode()
        hook = Webhook(key)
        msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
        signature = hook.sign(msg_id, datetime.fromtimestamp(now, tz=timezone.utc), body.decode())
        sw_headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
        hook.verify(body, sw_headers, json_parse=False)
        fns["standardwebhooks"] = lambda: hook.verify(body, sw_headers, json_parse=False)

    timings = interleaved_us(fns, repeats)
    for name, (us, number) in timings.items():
        ctx.log(f"{name}: {us:.2f} us/call (best of {repeats} x {number:,} calls)")
    ours = timings["ours"][0]
    ctx.add(
        Row(
            "3",
            "verify: ours, 600 B body",
            ours,
            "us",
            None,
            note=f"best of {repeats} interleaved rounds of {timings['ours'][1]:,} calls",
        )
    )
    if "stripe" in timings:
        ctx.add(Row("3", "verify: stripe verify_header", timings["stripe"][0], "us", None))
        ctx.add(Row("3", "verify: ours / stripe", ours / timings["stripe"][0], "", 0.75, "<="))
    else:
        ctx.add(Row("3", "verify: ours / stripe", None, "", 0.75, "<=", note="stripe could not be installed"))
    if "standardwebhooks" in timings:
        sw = timings["standardwebhooks"][0]
        ctx.add(
            Row(
                "3",
                "verify: standardwebhooks verify",
                sw,
                "us",
                None,
                note=f"json_parse=False; ours / standardwebhooks = {ours / sw:.2f}",
            )
        )
