"""`usage.cost` of a completed job, from the model's `pricing_skus`.

SKU names differ per provider, so the rule is a scoring heuristic, documented here:

1. Per-second SKUs are the keys containing `second` but not `megapixel` (`duration_seconds*`,
   `*_duration_seconds_*`, `cents_per_video_output_second_*`, `cents_per_second_output`).
   The best key wins by score (ties: alphabetical): +4 if it names the job's resolution tier
   (`_720p`, `_4k`, ...), -4 if it names another tier; +2 if it says `with_audio`/`without_audio`
   matching whether audio is generated, -2 if it contradicts; +1/-1 for `image_to_video` vs
   `text_to_video` matching whether frame images were given. Price x duration; `cents_*` keys
   are divided by 100; `minimum_cents_per_generation` is a floor.
2. Otherwise `video_tokens*` SKUs (Seedance): tokens = width x height x 24 fps x duration / 1024,
   key chosen by the same scoring.
3. Otherwise (e.g. megapixel-second upscalers, whose input size is unknown): cost is null.

Defaults when the request omits them: duration = smallest supported (else 5 s); resolution =
derived from `size`, else the first supported tier; audio = the model's `generate_audio` flag.
"""

from __future__ import annotations

import re

from ._catalog import dimensions
from ._validate import VideoRequest

_TIERS = ("360p", "480p", "720p", "768p", "1024p", "1080p", "1k", "2k", "4k")
_TIER_RE = re.compile(r"(?:^|_)(" + "|".join(_TIERS) + r")(?:_|$)")
_FPS = 24


def effective_duration(request: VideoRequest) -> int:
    if request.duration is not None:
        return request.duration
    supported = request.model.get("supported_durations")
    return min(supported) if supported else 5


def effective_resolution(request: VideoRequest) -> str | None:
    if request.resolution:
        return request.resolution
    if request.size:
        short = min(int(x) for x in request.size.split("x"))
        return "4K" if short >= 2160 else "2K" if short >= 1440 else f"{short}p"
    supported = request.model.get("supported_resolutions")
    return supported[0] if supported else None


def effective_audio(request: VideoRequest) -> bool:
    if request.generate_audio is not None:
        return request.generate_audio
    return request.model.get("generate_audio") is True


def _score(key: str, tier: str | None, audio: bool, image_input: bool) -> int:
    score = 0
    named = _TIER_RE.search(key)
    if named:
        score += 4 if tier is not None and named.group(1) == tier.lower() else -4
    if "without_audio" in key:
        score += -2 if audio else 2
    elif "with_audio" in key:
        score += 2 if audio else -2
    if "image_to_video" in key:
        score += 1 if image_input else -1
    elif "text_to_video" in key:
        score += -1 if image_input else 1
    if "video_input" in key or "reference" in key:
        score -= 8  # surcharges for inputs the simulator does not model
    return score


def _best(keys: list[str], tier: str | None, audio: bool, image_input: bool) -> str:
    return sorted(keys, key=lambda k: (-_score(k, tier, audio, image_input), k))[0]


def _pixels(request: VideoRequest, tier: str | None) -> int:
    if request.size:
        w, h = (int(x) for x in request.size.split("x"))
        return w * h
    w, h = dimensions(tier if tier in ("360p", "480p", "720p", "768p", "1080p", "1K", "2K", "4K") else "720p",
                      request.aspect_ratio or "16:9")  # fmt: skip
    return w * h


def estimate_cost(request: VideoRequest) -> float | None:
    """USD cost of the job, or None when no SKU rule applies (see module docstring)."""
    skus = request.model.get("pricing_skus")
    if not isinstance(skus, dict):
        return None
    duration = effective_duration(request)
    tier, audio, image_input = (
        effective_resolution(request),
        effective_audio(request),
        bool(request.frame_types),
    )
    try:
        per_second = [k for k in skus if "second" in k and "megapixel" not in k]
        if per_second:
            key = _best(per_second, tier, audio, image_input)
            cost = float(skus[key]) / (100 if key.startswith("cents_") else 1) * duration
            if "minimum_cents_per_generation" in skus:
                cost = max(cost, float(skus["minimum_cents_per_generation"]) / 100)
            return round(cost, 6)
        tokens = [k for k in skus if k.startswith("video_tokens")]
        if tokens:
            key = _best(tokens, tier, audio, image_input)
            count = _pixels(request, tier) * _FPS * duration / 1024
            return round(float(skus[key]) * count, 6)
    except ValueError:  # a price that is not a number
        return None
    return None
