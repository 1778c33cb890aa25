"""The webhook signature scheme: a known-answer vector, every failure reason, and properties."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_video import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookPayloadError,
    WebhookVerificationError,
    idempotency_key,
    parse_event,
    sign,
    verify,
    verify_signature,
)

# Computed outside Python:
#   printf '%s' '1700000000,{"type":"video.generation.completed","data":{"id":"abc","status":"completed"}}' \
#     | openssl dgst -sha256 -hmac 'whsec_test_secret'
KAT_SECRET = "whsec_test_secret"
KAT_TIMESTAMP = 1700000000
KAT_BODY = b'{"type":"video.generation.completed","data":{"id":"abc","status":"completed"}}'
KAT_DIGEST = "c8d8cc7d9974eda99fc909381f204562f776273637ca0944bc23e420c155033e"


def headers(value: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: value}


def test_known_answer_vector_matches_openssl() -> None:
    assert sign(KAT_SECRET, KAT_BODY, KAT_TIMESTAMP) == f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}"
    assert (
        verify_signature(
            KAT_SECRET, KAT_BODY, headers(f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}"), now=KAT_TIMESTAMP
        )
        == KAT_TIMESTAMP
    )


def test_verify_returns_parsed_event() -> None:
    sig = sign(KAT_SECRET, KAT_BODY, KAT_TIMESTAMP)
    event = verify(KAT_SECRET, KAT_BODY, headers(sig), now=KAT_TIMESTAMP + 10)
    assert (event.type, event.job_id, event.status) == ("video.generation.completed", "abc", "completed")


def test_header_lookup_is_case_insensitive_and_tolerates_spaces() -> None:
    sig = sign(KAT_SECRET, KAT_BODY, KAT_TIMESTAMP)
    t_part, v_part = sig.split(",")
    spaced = f"  {t_part} ,  {v_part.replace('=', ' = ')}  "
    assert verify_signature(KAT_SECRET, KAT_BODY, {"x-openrouter-signature": spaced}, now=KAT_TIMESTAMP)


def test_several_signatures_and_several_secrets_rotation() -> None:
    old = sign("old-secret", KAT_BODY, KAT_TIMESTAMP).split("v1=")[1]
    new = sign("new-secret", KAT_BODY, KAT_TIMESTAMP).split("v1=")[1]
    header = f"t={KAT_TIMESTAMP},v1={'0' * 64},v1={new}"
    assert verify_signature(["old-secret", "new-secret"], KAT_BODY, headers(header), now=KAT_TIMESTAMP)
    assert verify_signature(
        ["new-secret"], KAT_BODY, headers(f"t={KAT_TIMESTAMP},v1={old},v1={new}"), now=KAT_TIMESTAMP
    )
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(["other"], KAT_BODY, headers(header), now=KAT_TIMESTAMP)
    assert info.value.reason == "mismatch"


def test_uppercase_hex_is_accepted() -> None:
    sig = sign(KAT_SECRET, KAT_BODY, KAT_TIMESTAMP)
    assert verify_signature(
        KAT_SECRET,
        KAT_BODY,
        headers(sig.upper().replace("T=", "t=").replace("V1=", "v1=")),
        now=KAT_TIMESTAMP,
    )


@pytest.mark.parametrize(
    ("header", "secrets", "now", "reason"),
    [
        (None, KAT_SECRET, KAT_TIMESTAMP, "missing"),
        ("", KAT_SECRET, KAT_TIMESTAMP, "missing"),
        ("   ", KAT_SECRET, KAT_TIMESTAMP, "missing"),
        ("garbage", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t=nan,v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t=-5,v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t=1e9,v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t={'9' * 400},v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t=1,t=2,v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "malformed"),
        (f"t={KAT_TIMESTAMP}", KAT_SECRET, KAT_TIMESTAMP, "no_signature"),
        (f"t={KAT_TIMESTAMP},v0={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP, "no_signature"),
        (f"t={KAT_TIMESTAMP},v1={'0' * 64}", KAT_SECRET, KAT_TIMESTAMP, "mismatch"),
        (f"t={KAT_TIMESTAMP},v1=é{KAT_DIGEST[1:]}", KAT_SECRET, KAT_TIMESTAMP, "mismatch"),
        (f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP + 301, "too_old"),
        (f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}", KAT_SECRET, KAT_TIMESTAMP - 301, "too_new"),
        (f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}", "", KAT_TIMESTAMP, "empty_secret"),
        (f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}", [], KAT_TIMESTAMP, "empty_secret"),
        (f"t={KAT_TIMESTAMP},v1={KAT_DIGEST}", ["ok", ""], KAT_TIMESTAMP, "empty_secret"),
    ],
)
def test_each_failure_has_its_reason(header, secrets, now, reason) -> None:
    hdrs = {} if header is None else headers(header)
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(secrets, KAT_BODY, hdrs, now=now)
    assert info.value.reason == reason


def test_tolerance_edges_are_inclusive() -> None:
    sig = headers(sign(KAT_SECRET, KAT_BODY, KAT_TIMESTAMP))
    assert verify_signature(KAT_SECRET, KAT_BODY, sig, now=KAT_TIMESTAMP + 300)
    assert verify_signature(KAT_SECRET, KAT_BODY, sig, now=KAT_TIMESTAMP - 300)
    assert verify_signature(KAT_SECRET, KAT_BODY, sig, now=KAT_TIMESTAMP + 50, tolerance=60)
    with pytest.raises(WebhookVerificationError):
        verify_signature(KAT_SECRET, KAT_BODY, sig, now=KAT_TIMESTAMP + 61, tolerance=60)


def test_parse_event_rejects_non_events_with_payload_error() -> None:
    for body in (
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'{"type":"other"}',
        b'{"type":"video.generation.completed"}',
        b'{"type":"video.generation.completed","data":{"status":"completed"}}',
    ):
        with pytest.raises(WebhookPayloadError):
            parse_event(body)


def test_parse_event_takes_status_from_type_when_data_omits_it() -> None:
    event = parse_event(
        json.dumps({"type": "video.generation.failed", "data": {"id": "j1", "error": "boom"}})
    )
    assert (event.status, event.job.error) == ("failed", "boom")


def test_idempotency_key_header_else_job_and_status() -> None:
    event = parse_event(KAT_BODY)
    assert idempotency_key({IDEMPOTENCY_HEADER: "abc-completed"}, event) == "abc-completed"
    assert idempotency_key({}, event) == "abc-completed"
    assert idempotency_key({}, None) is None


# -- properties -----------------------------------------------------------------------------

secrets_st = st.one_of(st.text(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
timestamps = st.integers(min_value=0, max_value=10**12)


@settings(max_examples=300)
@given(secret=secrets_st, body=st.binary(max_size=2048), t=timestamps)
def test_sign_then_verify_roundtrips(secret, body, t) -> None:
    assert verify_signature(secret, body, headers(sign(secret, body, t)), now=t) == t


@settings(max_examples=300)
@given(secret=secrets_st, body=st.binary(max_size=512), t=timestamps, data=st.data())
def test_any_change_to_body_timestamp_or_signature_fails(secret, body, t, data) -> None:
    value = sign(secret, body, t)
    which = data.draw(st.sampled_from(["body", "timestamp", "signature"]))
    if which == "body":
        other = data.draw(st.binary(max_size=512).filter(lambda b: b != body))
        args = (other, value)
    elif which == "timestamp":
        t2 = data.draw(st.integers(min_value=max(0, t - 300), max_value=t + 300).filter(lambda x: x != t))
        args = (body, value.replace(f"t={t},", f"t={t2},"))
    else:
        digest = value.split("v1=")[1]
        pos = data.draw(st.integers(min_value=0, max_value=63))
        flipped = "0" if digest[pos] != "0" else "1"
        args = (body, value.split("v1=")[0] + "v1=" + digest[:pos] + flipped + digest[pos + 1 :])
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(secret, args[0], headers(args[1]), now=t)
    assert info.value.reason == "mismatch"


@settings(max_examples=500)
@given(
    header=st.text(max_size=300),
    body=st.binary(max_size=64),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_arbitrary_headers_only_ever_raise_the_typed_error(header, body, now) -> None:
    with contextlib.suppress(WebhookVerificationError):
        verify_signature("secret", body, headers(header), now=now)


@settings(max_examples=200)
@given(header=st.from_regex(r"\A[ tv1=,0-9a-fA-F]{0,120}\Z"), body=st.binary(max_size=64))
def test_signature_like_headers_only_ever_raise_the_typed_error(header, body) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_signature("secret", body, headers(header), now=1_700_000_000)


@settings(max_examples=300)
@given(
    header=st.one_of(
        st.from_regex(r"\At=[0-9]{1,16},v1=[0-9a-fA-F]{63,65}\Z"),
        st.from_regex(r"\A[ tv1=,0-9a-f]{0,90}\Z"),
        st.text(max_size=90),
    )
)
def test_the_fast_path_for_openrouters_header_shape_parses_as_the_general_parser_does(header) -> None:
    # `_parse_signature` takes a regex shortcut for `t=<digits>,v1=<64 hex>`; it must never accept,
    # refuse or read a header differently from the general parser it skips.
    from openrouter_video._webhooks import _parse_signature, _parse_signature_parts

    def outcome(parse):
        try:
            return parse(header)
        except WebhookVerificationError as exc:
            return exc.reason

    assert outcome(_parse_signature) == outcome(_parse_signature_parts)
