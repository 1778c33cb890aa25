"""Validate a `POST /videos` body against the catalog entry of its model.

Each failure raises `RequestError` whose message names the field, the value and the allowed values,
so a 400 from the simulator tells the caller exactly what to fix. A catalog list that is null
means "unknown": that check is skipped, as the real API's behaviour there is unknown too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .._types import ASPECT_RATIOS, FRAME_TYPES, RESOLUTIONS
from ._catalog import find_model

_SIZE_RE = re.compile(r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")
_REFERENCE_TYPES = ("image_url", "audio_url", "video_url")


class RequestError(ValueError):
    """The request is invalid; `str(exc)` is the message for the 400 answer."""


@dataclass(frozen=True)
class VideoRequest:
    """The validated parts of a submit that the simulator uses."""

    model: dict[str, Any]
    body: dict[str, Any]
    prompt: str | None = None
    duration: int | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    size: str | None = None
    generate_audio: bool | None = None
    callback_url: str | None = None
    frame_types: tuple[str, ...] = field(default_factory=tuple)

    @property
    def model_id(self) -> str:
        return str(self.model["id"])


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _allowed(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _check_member(name: str, value: Any, model: dict[str, Any], key: str, known: Sequence[str] | None) -> Any:
    """`value` must be a string in the model's list `key` (or in `known` when the list is null)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(f"{name}: {_show(value)} must be a string")
    supported = model.get(key)
    if isinstance(supported, list):
        if value not in supported:
            raise RequestError(
                f"{name}: {_show(value)} is not supported by {model['id']} (allowed: {_allowed(supported)})"
            )
    elif known is not None and value not in known:
        raise RequestError(f"{name}: {_show(value)} is not a valid value (allowed: {_allowed(known)})")
    return value


def _check_duration(value: Any, model: dict[str, Any]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"duration: {_show(value)} must be a positive integer number of seconds")
    supported = model.get("supported_durations")
    if isinstance(supported, list) and value not in supported:
        raise RequestError(
            f"duration: {value} is not supported by {model['id']} (allowed: {_allowed(sorted(supported))})"
        )
    return value


def _check_size(value: Any, model: dict[str, Any]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SIZE_RE.match(value):
        raise RequestError(f"size: {_show(value)} must be WIDTHxHEIGHT, e.g. 1280x720")
    return _check_member("size", value, model, "supported_sizes", None)


def _check_frames(value: Any, model: dict[str, Any]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError("frame_images: must be a list of {type, image_url: {url}, frame_type} objects")
    supported = model.get("supported_frame_images")
    seen: list[str] = []
    for i, frame in enumerate(value):
        where = f"frame_images[{i}]"
        if not isinstance(frame, dict):
            raise RequestError(f"{where}: must be an object")
        url = frame.get("image_url")
        if not isinstance(url, dict) or not isinstance(url.get("url"), str) or not url["url"]:
            raise RequestError(f"{where}.image_url.url: must be a non-empty string (https URL or data: URL)")
        if frame.get("type", "image_url") != "image_url":
            raise RequestError(f'{where}.type: {_show(frame.get("type"))} must be "image_url"')
        frame_type = frame.get("frame_type")
        if frame_type not in FRAME_TYPES:
            raise RequestError(
                f"{where}.frame_type: {_show(frame_type)} is not a valid frame type (allowed: {_allowed(FRAME_TYPES)})"
            )
        if isinstance(supported, list) and frame_type not in supported:
            raise RequestError(
                f"{where}.frame_type: {_show(frame_type)} is not supported by {model['id']} "
                f"(allowed: {_allowed(supported) or 'none'})"
            )
        if frame_type in seen:
            raise RequestError(f"frame_images: more than one {frame_type} (at most one of each frame type)")
        seen.append(frame_type)
    return tuple(seen)


def _check_references(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise RequestError("input_references: must be a list of {type, image_url|audio_url|video_url: {url}}")
    for i, ref in enumerate(value):
        kind = ref.get("type") if isinstance(ref, dict) else None
        if kind not in _REFERENCE_TYPES:
            raise RequestError(
                f"input_references[{i}].type: {_show(kind)} is not valid (allowed: {_allowed(_REFERENCE_TYPES)})"
            )
        part = ref.get(kind)
        if not isinstance(part, dict) or not isinstance(part.get("url"), str) or not part["url"]:
            raise RequestError(f"input_references[{i}].{kind}.url: must be a non-empty string")


def _check_flag(name: str, value: Any, model: dict[str, Any]) -> None:
    """`seed` / `generate_audio: true` are refused when the model's flag is false (null: allowed)."""
    if model.get(name) is False:
        raise RequestError(
            f"{name}: {_show(value)} is not supported by {model['id']} ({name} is false for it)"
        )


def _check_callback(value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise RequestError(f"callback_url: {_show(value)} must be an absolute http(s) URL")
    return str(value)


def _check_provider(value: Any, model: dict[str, Any]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise RequestError("provider: must be an object")
    options = value.get("options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise RequestError("provider.options: must be an object keyed by provider slug")
    allowed = model.get("allowed_passthrough_parameters")
    for slug, params in options.items():
        if not isinstance(params, dict):
            raise RequestError(f"provider.options.{slug}: must be an object")
        where = f"provider.options.{slug}"
        if set(params) == {"parameters"} and isinstance(params["parameters"], dict):
            params, where = params["parameters"], f"{where}.parameters"
        if not isinstance(allowed, list):
            continue
        for key in params:
            if key not in allowed:
                raise RequestError(
                    f"{where}.{key}: {_show(key)} is not an allowed passthrough parameter for {model['id']} "
                    f"(allowed: {_allowed(allowed) or 'none'})"
                )


def _check_upscale(body: dict[str, Any], model: dict[str, Any]) -> None:
    factor, creativity = body.get("upscale_factor"), body.get("creativity")
    bounds = model.get("upscale_factor")
    if factor is not None:
        if not isinstance(bounds, dict):
            raise RequestError(
                f"upscale_factor: {_show(factor)} is not supported by {model['id']} (not an upscaler)"
            )
        low, high = bounds.get("min", 0), bounds.get("max", float("inf"))
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not low <= factor <= high:
            raise RequestError(
                f"upscale_factor: {_show(factor)} is out of range for {model['id']} ({low}..{high})"
            )
    if creativity is not None:
        allowed = model.get("creativity")
        if not isinstance(allowed, list):
            raise RequestError(
                f"creativity: {_show(creativity)} is not supported by {model['id']} (not an upscaler)"
            )
        if creativity not in allowed or isinstance(creativity, bool):
            raise RequestError(
                f"creativity: {_show(creativity)} is not supported by {model['id']} (allowed: {_allowed(allowed)})"
            )


def validate_request(body: Any, catalog: list[dict[str, Any]]) -> VideoRequest:
    """Return the validated request or raise `RequestError` naming the first problem."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model_id = body.get("model")
    if model_id is None or model_id == "":
        raise RequestError("model: is required (e.g. google/veo-3.1; see GET /api/v1/videos/models)")
    model = find_model(catalog, model_id) if isinstance(model_id, str) else None
    if model is None:
        raise RequestError(
            f"model: {_show(model_id)} is not a video model (allowed: {_allowed([m['id'] for m in catalog])})"
        )
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise RequestError(f"prompt: {_show(prompt)} must be a string")
    frame_types = _check_frames(body.get("frame_images"), model)
    _check_references(body.get("input_references"))
    if not prompt and not frame_types and not body.get("input_references"):
        raise RequestError("prompt: is required (unless frame_images or input_references are given)")
    if body.get("seed") is not None:
        if isinstance(body["seed"], bool) or not isinstance(body["seed"], int):
            raise RequestError(f"seed: {_show(body['seed'])} must be an integer")
        _check_flag("seed", body["seed"], model)
    audio = body.get("generate_audio")
    if audio is not None and not isinstance(audio, bool):
        raise RequestError(f"generate_audio: {_show(audio)} must be true or false")
    if audio is True:
        _check_flag("generate_audio", audio, model)
    _check_provider(body.get("provider"), model)
    _check_upscale(body, model)
    return VideoRequest(
        model=model,
        body=body,
        prompt=prompt,
        duration=_check_duration(body.get("duration"), model),
        resolution=_check_member(
            "resolution", body.get("resolution"), model, "supported_resolutions", RESOLUTIONS
        ),
        aspect_ratio=_check_member(
            "aspect_ratio", body.get("aspect_ratio"), model, "supported_aspect_ratios", ASPECT_RATIOS
        ),
        size=_check_size(body.get("size"), model),
        generate_audio=audio,
        callback_url=_check_callback(body.get("callback_url")),
        frame_types=frame_types,
    )
