"""Build and check a submit body before any paid request leaves the machine.

Two layers, both pure: `build_submit_body` checks what the API itself accepts (types, enums,
HTTPS callback, image inputs) and turns local image files into `data:` URLs;
`check_capabilities` checks the body against the chosen model's catalog entry, where a `None`
capability means "unknown" and is not enforced.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import ValidationError
from ._types import ASPECT_RATIOS, FRAME_TYPES, RESOLUTIONS, VideoModel

_SIZE_RE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
# Job ids go into URL paths and file names: this is the one rule for them (the receiver's API
# contract states the same pattern).
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,199}$"
JOB_ID_RULE = "letters, digits, '-' and '_', starting with a letter or digit, at most 200 characters"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)
MAX_INLINE_IMAGE_BYTES = 50 * 1024 * 1024

# Magic numbers of the image formats providers accept; the MIME type comes from the bytes, not the name.
_IMAGE_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
)


def normalize_model_id(model: str) -> str:
    """`openrouter/google/veo-3.1` → `google/veo-3.1` (a common copy-paste prefix)."""
    if not isinstance(model, str) or not model.strip():
        raise ValidationError("model", model, "model is required, e.g. 'google/veo-3.1'")
    model = model.strip()
    return model[len("openrouter/") :] if model.startswith("openrouter/") else model


def is_valid_job_id(job_id: Any) -> bool:
    """True for ids safe to put in a URL path or a file name (letters, digits, '-', '_')."""
    return isinstance(job_id, str) and _JOB_ID_RE.fullmatch(job_id) is not None


def check_job_id(job_id: Any) -> str:
    if not is_valid_job_id(job_id):
        raise ValidationError("job_id", job_id, f"not a valid job id: {job_id!r}")
    return str(job_id)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_callback_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ValidationError("callback_url", url, "callback_url must be a URL string")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url  # Local development against the simulator; OpenRouter itself requires HTTPS.
    raise ValidationError("callback_url", url, f"callback_url must be an https:// URL, got {url!r}")


def image_url(value: Any, field: str) -> str:
    """An https/data URL passes verbatim; a local file path becomes a `data:` URL."""
    if not isinstance(value, (str, os.PathLike)):
        raise ValidationError(field, value, f"{field} must be an https URL, a data: URL or a file path")
    text = os.fspath(value)
    if text.startswith(("https://", "data:")):
        return text
    if text.startswith("http://"):
        raise ValidationError(field, text, f"{field} must use https (providers fetch it publicly): {text}")
    if not os.path.isfile(text):
        raise ValidationError(field, text, f"{field}: no such file: {text}")
    size = os.path.getsize(text)
    if size > MAX_INLINE_IMAGE_BYTES:
        raise ValidationError(
            field, text, f"{field}: {text} is {size} bytes; inline images are limited to 50 MiB"
        )
    with open(text, "rb") as fh:
        data = fh.read()
    mime = sniff_image_type(data)
    if mime is None:
        raise ValidationError(field, text, f"{field}: {text} is not a PNG, JPEG, GIF or WebP image")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def sniff_image_type(data: bytes) -> str | None:
    for magic, offset, mime in _IMAGE_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    return None


def _frame_images(frames: Sequence[Any] | None, first_frame: Any, last_frame: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for i, frame in enumerate(frames or ()):
        field = f"frame_images[{i}]"
        if not isinstance(frame, Mapping):
            raise ValidationError(field, frame, f"{field} must be an object with image_url and frame_type")
        frame_type = frame.get("frame_type")
        if frame_type not in FRAME_TYPES:
            raise ValidationError(
                f"{field}.frame_type",
                frame_type,
                f"{field}.frame_type must be one of {', '.join(FRAME_TYPES)}",
                allowed=FRAME_TYPES,
            )
        url = frame.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        result.append(
            {"type": "image_url", "image_url": {"url": image_url(url, field)}, "frame_type": frame_type}
        )
    for value, frame_type in ((first_frame, "first_frame"), (last_frame, "last_frame")):
        if value is not None:
            url = image_url(value, frame_type)
            result.append({"type": "image_url", "image_url": {"url": url}, "frame_type": frame_type})
    for frame_type in FRAME_TYPES:
        if sum(f["frame_type"] == frame_type for f in result) > 1:
            raise ValidationError("frame_images", frame_type, f"at most one {frame_type} may be given")
    return result


def _input_references(refs: Sequence[Any] | None) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for i, ref in enumerate(refs or ()):
        field = f"input_references[{i}]"
        if isinstance(ref, (str, os.PathLike)):
            result.append({"type": "image_url", "image_url": {"url": image_url(ref, field)}})
            continue
        if not isinstance(ref, Mapping) or ref.get("type") not in ("image_url", "audio_url", "video_url"):
            raise ValidationError(
                field,
                ref,
                f"{field} must be a path/URL or {{'type': 'image_url'|'audio_url'|'video_url', ...}}",
            )
        kind = ref["type"]
        inner = ref.get(kind)
        url = inner.get("url") if isinstance(inner, Mapping) else inner
        if kind == "image_url":
            url = image_url(url, field)
        elif not isinstance(url, str) or not url.startswith(("https://", "data:")):
            raise ValidationError(field, url, f"{field}: {kind} must be an https or data: URL")
        result.append({"type": kind, kind: {"url": url}})
    return result


def build_submit_body(
    *,
    model: str,
    prompt: str | None = None,
    duration: int | None = None,
    resolution: str | None = None,
    aspect_ratio: str | None = None,
    size: str | None = None,
    seed: int | None = None,
    generate_audio: bool | None = None,
    callback_url: str | None = None,
    frame_images: Sequence[Any] | None = None,
    first_frame: Any = None,
    last_frame: Any = None,
    input_references: Sequence[Any] | None = None,
    provider_options: Mapping[str, Any] | None = None,
    upscale_factor: float | None = None,
    creativity: int | None = None,
    previous_job_id: str | None = None,
    session_id: str | None = None,
    trace: Mapping[str, Any] | None = None,
    user: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of `POST /videos`, checked against what the API accepts for any model."""
    body: dict[str, Any] = {"model": normalize_model_id(model)}
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValidationError("prompt", prompt, "prompt must be non-empty text")
        body["prompt"] = prompt
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
            raise ValidationError("duration", duration, "duration must be a whole number of seconds >= 1")
        body["duration"] = duration
    _enum(body, "resolution", resolution, RESOLUTIONS)
    _enum(body, "aspect_ratio", aspect_ratio, ASPECT_RATIOS)
    if size is not None:
        if not isinstance(size, str) or not _SIZE_RE.fullmatch(size):
            raise ValidationError("size", size, "size must be WIDTHxHEIGHT, e.g. 1280x720")
        body["size"] = size
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValidationError("seed", seed, "seed must be an integer")
        body["seed"] = seed
    if generate_audio is not None:
        if not isinstance(generate_audio, bool):
            raise ValidationError("generate_audio", generate_audio, "generate_audio must be true or false")
        body["generate_audio"] = generate_audio
    if callback_url is not None:
        body["callback_url"] = check_callback_url(callback_url)
    frames = _frame_images(frame_images, first_frame, last_frame)
    if frames:
        body["frame_images"] = frames
    refs = _input_references(input_references)
    if refs:
        body["input_references"] = refs
    if provider_options:
        if not isinstance(provider_options, Mapping) or not all(
            isinstance(v, Mapping) for v in provider_options.values()
        ):
            raise ValidationError(
                "provider_options",
                provider_options,
                "provider_options maps a provider slug to its options, e.g. {'google-vertex': {'parameters': {...}}}",
            )
        body["provider"] = {"options": {k: dict(v) for k, v in provider_options.items()}}
    if upscale_factor is not None:
        if (
            isinstance(upscale_factor, bool)
            or not isinstance(upscale_factor, (int, float))
            or upscale_factor <= 0
        ):
            raise ValidationError("upscale_factor", upscale_factor, "upscale_factor must be a number > 0")
        body["upscale_factor"] = upscale_factor
    if creativity is not None:
        if isinstance(creativity, bool) or not isinstance(creativity, int):
            raise ValidationError("creativity", creativity, "creativity must be an integer")
        body["creativity"] = creativity
    if previous_job_id is not None:
        body["previous_job_id"] = check_job_id(previous_job_id)
    if session_id is not None:
        if not isinstance(session_id, str) or len(session_id) > 256:
            raise ValidationError(
                "session_id", session_id, "session_id must be text of at most 256 characters"
            )
        body["session_id"] = session_id
    if trace is not None:
        body["trace"] = dict(trace)
    if user is not None:
        body["user"] = str(user)
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    if "prompt" not in body and not frames and not refs:
        raise ValidationError(
            "prompt", None, "a prompt is required (or an image input for image-only models)"
        )
    return body


def _enum(body: dict[str, Any], field: str, value: Any, allowed: Sequence[str]) -> None:
    if value is None:
        return
    if value not in allowed:
        raise ValidationError(
            field, value, f"{field} {value!r} is not one of {', '.join(allowed)}", allowed=allowed
        )
    body[field] = value


def _not_allowed(field: str, value: Any, model: VideoModel, allowed: Iterable[Any]) -> ValidationError:
    allowed = tuple(allowed)
    listing = ", ".join(str(a) for a in allowed) if allowed else "none"
    return ValidationError(
        field,
        value,
        f"{field} {value!r} is not supported by {model.id} (allowed: {listing})",
        allowed=allowed,
    )


def provider_option_keys(options: Mapping[str, Any]) -> list[str]:
    """The option keys a provider entry sets; `{'parameters': {...}}` is looked through."""
    if set(options) == {"parameters"} and isinstance(options["parameters"], Mapping):
        return list(options["parameters"])
    return list(options)


def check_capabilities(body: Mapping[str, Any], model: VideoModel) -> None:
    """Raise ValidationError where the body asks for something the model's catalog entry rules out."""
    checks = (
        ("duration", model.supported_durations),
        ("resolution", model.supported_resolutions),
        ("aspect_ratio", model.supported_aspect_ratios),
        ("size", model.supported_sizes),
    )
    for field, allowed in checks:
        if field in body and allowed is not None and body[field] not in allowed:
            shown = sorted(allowed) if field == "duration" else allowed
            raise _not_allowed(field, body[field], model, shown)
    frames = body.get("frame_images") or ()
    if frames and model.supported_frame_images is not None:
        for frame in frames:
            if frame["frame_type"] not in model.supported_frame_images:
                raise _not_allowed(
                    "frame_images.frame_type", frame["frame_type"], model, model.supported_frame_images
                )
    factor = body.get("upscale_factor")
    if factor is not None and model.upscale_factor is not None:
        low, high = model.upscale_factor.get("min"), model.upscale_factor.get("max")
        if (low is not None and factor < low) or (high is not None and factor > high):
            raise ValidationError(
                "upscale_factor",
                factor,
                f"upscale_factor {factor} is outside {low}..{high} for {model.id}",
                allowed=(low, high),
            )
    if "creativity" in body and model.creativity is not None and body["creativity"] not in model.creativity:
        raise _not_allowed("creativity", body["creativity"], model, model.creativity)
    if body.get("generate_audio") is True and model.generate_audio is False:
        raise ValidationError("generate_audio", True, f"{model.id} cannot generate audio", allowed=(False,))
    if "seed" in body and model.seed is False:
        raise ValidationError("seed", body["seed"], f"{model.id} does not support a seed", allowed=())
    options = (body.get("provider") or {}).get("options") or {}
    allowed_keys = model.allowed_passthrough_parameters
    if options and allowed_keys is not None:
        for slug, entry in options.items():
            for key in provider_option_keys(entry):
                if key not in allowed_keys:
                    raise _not_allowed(f"provider_options.{slug}.{key}", key, model, allowed_keys)


def unknown_model_error(model_id: str, known: Iterable[str]) -> ValidationError:
    known = sorted(known)
    close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; list them with `openrouter-video models`"
    return ValidationError("model", model_id, f"unknown video model {model_id!r}{hint}", allowed=tuple(known))
