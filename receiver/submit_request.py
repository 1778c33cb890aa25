"""A submit's body, from what a caller sent to what is paid for: shared by `POST /jobs` and the
dashboard's Submit page, so both check exactly the same things before `Submitter.submit`.

`prepare_submit(payload)` takes OpenRouter's `POST /videos` body as the caller gave it (without
`callback_url`: the receiver sets that) and returns the client's submit arguments and the upstream
body they make, or raises `ContractError` (a field of the wrong type or size) or `ValidationError`
(a value the API rules out). The model's catalog entry is checked afterwards, by the submitter.
"""

from __future__ import annotations

from typing import Any

import msgspec

from openrouter_video import ValidationError
from openrouter_video._validation import build_submit_body

from . import contract

_IMAGE_FIELDS = ("image_url", "audio_url", "video_url")


def prepare_submit(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the client's submit arguments, the upstream body they make)."""
    if "callback_url" in payload:
        raise ValidationError(
            "callback_url",
            payload["callback_url"],
            "callback_url is set by the receiver (its own webhook URL, naming the submission); leave it out",
        )
    parsed = contract.parse(payload, contract.SubmitRequest)
    fields = _client_fields(parsed)
    return fields, build_submit_body(**fields)


def _client_fields(parsed: contract.SubmitRequest) -> dict[str, Any]:
    """The body as the client's submit arguments; every image, audio or video input must be an https
    or data: URL (the client would read a local path: the receiver reads no files for a caller)."""
    fields: dict[str, Any] = msgspec.to_builtins(parsed)
    fields.pop("notify_url", None)  # the receiver's own field (POST /jobs takes it out first)
    provider = fields.pop("provider", None)
    if provider is not None:
        fields["provider_options"] = provider["options"]
    inputs = [(f"frame_images[{i}]", f["image_url"]) for i, f in enumerate(fields.get("frame_images") or ())]
    for i, ref in enumerate(fields.get("input_references") or ()):
        inputs += [(f"input_references[{i}].{k}", ref[k]) for k in _IMAGE_FIELDS if ref.get(k)]
        if sum(1 for k in _IMAGE_FIELDS if ref.get(k)) != 1 or not ref.get(ref["type"]):
            raise ValidationError(
                f"input_references[{i}]",
                ref["type"],
                f"input_references[{i}] needs its {ref['type']} and no other",
            )
    for name, inner in inputs:
        url = inner["url"]
        if not url.startswith(("https://", "data:")):
            raise ValidationError(
                name, url[:100], f"{name} must be an https:// or data: URL, got {url[:100]!r}"
            )
    return fields
