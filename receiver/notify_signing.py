"""Signing a notification with the Standard Webhooks scheme, through its reference implementation,
the `standardwebhooks` library (what apps verify with, so both sides compute the same thing):

    webhook-id:        msg_<random>, the same on every retry of one notification (apps deduplicate by it)
    webhook-timestamp: unix seconds of this attempt (a retry is signed afresh: never stale)
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" under the secret's key>

We only sign. The library's verifier has known flaws (read in its source, 1.0.x to 1.3.0, and in the
issues of libraries that use it); nothing here relies on any of them, and where we depend on the
library at all we stay on the side of it that is exact:

- Lenient secret decoding: `Webhook("whsec_...")` uses `base64.b64decode` without `validate`, which
  drops characters outside the alphabet, so a mistyped secret silently becomes a different key.
  We decode RECEIVER_NOTIFY_SECRET strictly at start-up (`settings_notify.secret_bytes`) and hand the
  library the key bytes, so what we sign with is exactly the key the secret stands for.
- Loose timestamp parsing: the header goes through `float()`, so `1700000000.9`, ` 1700000000 `,
  `1_700_000_000` or `1.7e9` are accepted, and the signature is checked against `floor()` of it:
  the signed timestamp string is not bound byte for byte to the header. We send whole seconds only.
- Fixed tolerance: 5 minutes, in a name-mangled method (not configurable). Our retries are signed at
  send time, so a delivery is always fresh whatever the schedule.
- Crashes instead of refusals in older releases: a `webhook-signature` entry without exactly one
  comma (`ValueError` on unpacking) or with bad base64 (`binascii.Error`), and a body that is not
  UTF-8 (`UnicodeDecodeError` from `data.decode()`), raise something other than
  WebhookVerificationError, which an app catching only that answers with a 500. We send UTF-8 JSON
  and one well-formed `v1,` signature; the README tells apps to treat any exception as a refusal.
- `sign()` in older releases replaced the datetime's timezone instead of converting it, so an aware
  non-UTC (or a naive local) datetime signed the wrong second; and it formatted a bytes body with
  an f-string (`b'...'`). We pass an aware UTC datetime and the body as the str it decodes to.

Replay protection beyond the 5-minute window is the app's (deduplicate by `webhook-id`).

Which secret: a job submitted or registered with a named token is signed with that token's own
secret (made by `tokens create`, shown once with the token), so one app cannot forge another's
notifications; the built-in admin's jobs and webhook-only ones with RECEIVER_NOTIFY_SECRET.
"""

from __future__ import annotations

from datetime import datetime, timezone

from standardwebhooks import Webhook

from .settings import Settings
from .settings_notify import secret_bytes
from .storage.gateway import Tokens


class NoSecret(Exception):
    """No signing secret for this notification: it is not sent (a failed attempt saying so)."""


async def secret_for(settings: Settings, tokens: Tokens, owner: str | None) -> bytes:
    """The key to sign `owner`'s notifications with (NoSecret: none, so nothing is sent)."""
    if owner is not None:
        secret = await tokens.notify_secret(owner)
        if secret is None:  # never the receiver's instead: the app could not verify it anyway
            raise NoSecret(f"token {owner!r} was revoked: its notifications are not sent")
        return secret_bytes(secret)
    if settings.notify_secret is None:
        raise NoSecret("RECEIVER_NOTIFY_SECRET is not set: notifications are never sent unsigned")
    return secret_bytes(settings.notify_secret.reveal())


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for `body` sent as `msg_id` at `timestamp` (whole unix seconds)."""
    at = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    signature = Webhook(key).sign(msg_id, at, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
