"""What a video will cost before it is paid for: an estimate from the model's `pricing_skus`.

Pure functions, no I/O. `estimate_cost(model, body)` takes a catalog entry and a `POST /videos` body
(as `build_submit_body` makes it) and returns a `CostEstimate`; `price_rows(model)` lists the price
per second by resolution and audio, for tables.

SKU names differ per provider (see the API digest); only the ones whose meaning is plain are used:

* per-second prices: keys with `second` but not `megapixel`, e.g. `duration_seconds`,
  `duration_seconds_with_audio_4k`, `text_to_video_duration_seconds_720p`,
  `cents_per_video_output_second_480p`, `cents_per_second_output` (`cents_*` are cents). A key may
  name a resolution tier (`_720p`, `_4k`; a key without one is the price of the other tiers), audio
  (`with_audio` / `without_audio`; a key saying neither is the price when no audio key matches) and
  the input (`text_to_video` / `image_to_video`).
* `minimum_cents_per_generation`: a floor; `cents_per_image_input`: per input image (frames and
  references); `reference_images`: per reference image.

It will not guess: a model priced per video token (`video_tokens*`: how many tokens a video uses is
not published), per megapixel-second of the input (upscalers), with no duration to go by, or with no
price for the requested resolution gets `usd=None` and a `reason`. Where the request leaves the
duration, resolution or audio open and the price depends on it, the estimate is the most it can
cost (`upper_bound=True`), never an average.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._types import VideoModel

__all__ = ["CostEstimate", "PriceRow", "estimate_cost", "price_rows"]

_TIERS = {"360p", "480p", "720p", "768p", "1024p", "1080p", "1k", "2k", "4k"}
_TOKEN_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class CostEstimate:
    """An estimated cost in USD, or `usd=None` with the `reason` it cannot be estimated."""

    model: str
    usd: float | None
    reason: str | None = None
    seconds: int | None = None
    usd_per_second: float | None = None
    upper_bound: bool = False  # the request left something open: this is the most it can cost
    notes: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.usd is not None

    def describe(self) -> str:
        """One line for a person, e.g. `estimated cost: $1.60 (4 s x $0.40/s)`."""
        if self.usd is None:
            return f"estimated cost: unknown for {self.model}: {self.reason}"
        text = f"estimated cost: {'at most ' if self.upper_bound else ''}${self.usd:.2f}"
        detail = []
        if self.seconds is not None and self.usd_per_second is not None:
            detail.append(f"{self.seconds} s x ${self.usd_per_second:.4g}/s")
        detail.extend(self.notes)
        return text + (f" ({'; '.join(detail)})" if detail else "")


@dataclass(frozen=True)
class PriceRow:
    """The price per second for some resolutions (None: any) with or without audio (None: either)."""

    resolutions: tuple[str, ...] | None
    audio: bool | None
    usd_per_second: float


@dataclass(frozen=True)
class _Sku:
    key: str
    usd: float  # per unit, in dollars
    tier: str | None
    audio: bool | None
    mode: str | None  # "text" / "image" / None


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _per_second_skus(skus: Mapping[str, str]) -> list[_Sku]:
    found = []
    for key, raw in skus.items():
        lower = key.lower()
        if "second" not in lower or "megapixel" in lower or lower.startswith("minimum"):
            continue
        price = _number(raw)
        if price is None:
            continue
        tokens = set(_TOKEN_RE.findall(lower.replace("_", " ")))
        tiers = tokens & _TIERS
        audio = False if "without_audio" in lower else True if "with_audio" in lower else None
        mode = "image" if "image_to_video" in lower else "text" if "text_to_video" in lower else None
        found.append(
            _Sku(
                key,
                price / 100 if lower.startswith("cents") else price,
                next(iter(tiers)) if len(tiers) == 1 else None,
                audio,
                mode,
            )
        )
    return found


def _tier_of(resolution: str | None, size: str | None) -> str | None:
    if resolution:
        return resolution.lower()
    if size:
        short = min(int(x) for x in size.lower().split("x"))
        return "4k" if short >= 2160 else "2k" if short >= 1440 else f"{short}p"
    return None


def _pick(skus: list[_Sku], tier: str | None, audio: bool, mode: str) -> _Sku | None:
    """The SKU for one combination: the most specific match, else the one that says nothing."""
    tiered = [s for s in skus if s.tier is not None and s.tier == tier]
    pool = tiered or [s for s in skus if s.tier is None]
    for attribute, wanted in (("audio", audio), ("mode", mode)):
        exact = [s for s in pool if getattr(s, attribute) == wanted]
        pool = exact or [s for s in pool if getattr(s, attribute) is None]
    return max(pool, key=lambda s: s.usd) if pool else None


def _audio_options(model: VideoModel, requested: Any) -> list[bool]:
    if isinstance(requested, bool):
        return [requested]
    return [False] if model.generate_audio is False else [True, False]


def _cannot(model: VideoModel, skus: Mapping[str, str] | None) -> str:
    if not skus:
        return "the catalog gives no prices for this model"
    keys = ", ".join(sorted(skus))
    if any(k.startswith("video_tokens") for k in skus):
        return f"it is priced per video token ({keys}); how many tokens a video uses is not published"
    if any("megapixel" in k for k in skus):
        return f"it is priced per megapixel-second of the input video ({keys})"
    return f"no per-second price among its SKUs ({keys})"


def estimate_cost(model: VideoModel, body: Mapping[str, Any]) -> CostEstimate:
    """The estimated USD cost of submitting `body` (a `POST /videos` body) to `model`."""
    skus = model.pricing_skus or {}
    per_second = _per_second_skus(skus)
    if not per_second:
        return CostEstimate(model.id, None, _cannot(model, skus))

    notes: list[str] = []
    duration = body.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool):
        durations = [d for d in model.supported_durations or () if isinstance(d, int)]
        if not durations:
            return CostEstimate(
                model.id, None, "no duration given, and the catalog lists none for this model"
            )
        duration = max(durations)
        if len(durations) > 1:
            notes.append(f"no duration given: priced at the longest, {duration} s")

    tier = _tier_of(body.get("resolution"), body.get("size"))
    listed = [r.lower() for r in model.supported_resolutions or ()]
    if tier is not None and listed and tier not in listed:
        return CostEstimate(
            model.id, None, f"{body.get('resolution') or body.get('size')} is not among its resolutions"
        )
    if tier is not None:
        tiers: list[str | None] = [tier]
    elif model.supported_resolutions:
        tiers = [r.lower() for r in model.supported_resolutions]
    else:
        tiers = [None]
    mode = "image" if body.get("frame_images") else "text"
    prices: list[tuple[float, _Sku]] = []
    for candidate in tiers:
        for audio in _audio_options(model, body.get("generate_audio")):
            sku = _pick(per_second, candidate, audio, mode)
            if sku is None:
                shown = (
                    "this resolution"
                    if candidate is None
                    else candidate.upper()
                    if candidate.endswith("k")
                    else candidate
                )
                what = "image-to-video" if mode == "image" else "video"
                return CostEstimate(
                    model.id, None, f"no per-second price for {shown} {what} among {', '.join(sorted(skus))}"
                )
            prices.append((sku.usd, sku))
    rate, _ = max(prices, key=lambda p: p[0])
    upper = len({p for p, _ in prices}) > 1
    if upper:
        notes.append("resolution or audio not given: priced at the dearest")
    cost = rate * duration

    images = len(body.get("frame_images") or ()) + len(body.get("input_references") or ())
    per_image = _number(skus.get("cents_per_image_input", ""))
    if per_image is not None and images:
        cost += images * per_image / 100
        notes.append(f"{images} input image(s)")
    per_reference = _number(skus.get("reference_images", ""))
    references = len(body.get("input_references") or ())
    if per_reference is not None and references:
        cost += references * per_reference
        notes.append(f"{references} reference image(s)")
    minimum = _number(skus.get("minimum_cents_per_generation", ""))
    if minimum is not None and cost < minimum / 100:
        cost = minimum / 100
        notes.append("the minimum per generation")
    upper = upper or any(n.startswith("no duration") for n in notes)
    return CostEstimate(model.id, round(cost, 6), None, duration, rate, upper, tuple(notes))


def price_rows(model: VideoModel) -> list[PriceRow] | None:
    """Price per second of a text-to-video job, by resolution and audio where the SKUs differ;
    None when the model is not priced per second (see `estimate_cost` for why)."""
    per_second = _per_second_skus(model.pricing_skus or {})
    if not per_second:
        return None
    tiers: list[str | None] = list(model.supported_resolutions or ())
    if not tiers:
        tiers = [*sorted({s.tier for s in per_second if s.tier})] or [None]
    audios = _audio_options(model, None)
    table: dict[str | None, dict[bool, float]] = {}
    for tier in tiers:
        by_audio = {}
        for audio in audios:
            sku = _pick(per_second, tier.lower() if tier else None, audio, "text")
            if sku is not None:
                by_audio[audio] = sku.usd
        if by_audio:
            table[tier] = by_audio
    if not table:
        return None
    differs_by_audio = any(len(set(v.values())) > 1 for v in table.values())
    rows: list[PriceRow] = []
    groups: dict[tuple[tuple[bool, float], ...], list[str | None]] = {}
    for tier, by_audio in table.items():
        groups.setdefault(tuple(sorted(by_audio.items(), reverse=True)), []).append(tier)
    single_group = len(groups) == 1
    for prices, group in groups.items():
        resolutions = None if single_group or group == [None] else tuple(t for t in group if t is not None)
        if differs_by_audio:
            rows.extend(PriceRow(resolutions, audio, usd) for audio, usd in prices)
        else:
            rows.append(PriceRow(resolutions, None, max(usd for _, usd in prices)))
    return rows
