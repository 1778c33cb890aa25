"""The simulated `GET /videos/models` catalog.

Built from the reference digest (a raw dump of the live endpoint): `google/veo-3.1` is verbatim;
for the others the digest's durations, resolutions, aspect ratios, frame images, audio/seed flags,
pricing SKUs and passthrough keys are kept, and what it abbreviates (slugs' dates, descriptions,
sizes, some SKU values) is filled in plausibly. Nulls stay null where the digest says null.
"""

from __future__ import annotations

from typing import Any

_RES_SHORT_SIDE = {
    "360p": 360,
    "480p": 480,
    "720p": 720,
    "768p": 768,
    "1080p": 1080,
    "1K": 1024,
    "2K": 1440,
    "4K": 2160,
}

_VEO_PASSTHROUGH = ["personGeneration", "aspectRatio", "negativePrompt", "conditioningScale", "enhancePrompt"]
_SEVEN_RATIOS = ["1:1", "3:4", "9:16", "4:3", "16:9", "21:9", "9:21"]
_FIRST_LAST = ["first_frame", "last_frame"]


def dimensions(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Width and height of a resolution tier at an aspect ratio (short side = the tier)."""
    short = _RES_SHORT_SIDE[resolution]
    w, h = (int(x) for x in aspect_ratio.split(":"))
    long = int(round(short * max(w, h) / min(w, h) / 2)) * 2
    return (long, short) if w >= h else (short, long)


def _sizes(resolutions: list[str], ratios: list[str]) -> list[str]:
    return [f"{w}x{h}" for r in resolutions for a in ratios for w, h in [dimensions(r, a)]]


def _model(
    id: str,
    date: str,
    name: str,
    created: int,
    description: str,
    *,
    durations: list[int] | None,
    resolutions: list[str] | None,
    ratios: list[str] | None,
    frames: list[str] | None,
    audio: bool | None,
    seed: bool | None,
    pricing: dict[str, str] | None,
    passthrough: list[str],
    sizes: list[str] | None | bool = True,
    hugging_face_id: str | None = None,
    upscale_factor: dict[str, float] | None = None,
    creativity: list[int] | None = None,
) -> dict[str, Any]:
    """One entry, with the live endpoint's key order. `sizes=True` derives them from tiers x ratios."""
    if sizes is True:
        sizes = _sizes(resolutions, ratios) if resolutions and ratios else None
    return {
        "id": id,
        "canonical_slug": f"{id}-{date}",
        "hugging_face_id": hugging_face_id,
        "name": name,
        "created": created,
        "description": description,
        "supported_resolutions": resolutions,
        "supported_aspect_ratios": ratios,
        "supported_sizes": sizes,
        "supported_durations": durations,
        "supported_frame_images": frames,
        "upscale_factor": upscale_factor,
        "creativity": creativity,
        "generate_audio": audio,
        "seed": seed,
        "pricing_skus": pricing,
        "allowed_passthrough_parameters": passthrough,
    }


CATALOG: list[dict[str, Any]] = [
    {
        "id": "google/veo-3.1",
        "canonical_slug": "google/veo-3.1-20260320",
        "hugging_face_id": None,
        "name": "Google: Veo 3.1",
        "created": 1774277148,
        "description": "Veo 3.1 is Google's state-of-the-art video generation model, producing high-fidelity "
        "1080p and 4K video with natively generated audio, richer narrative control and improved "
        "image-to-video...",
        "supported_resolutions": ["720p", "1080p", "4K"],
        "supported_aspect_ratios": ["16:9", "9:16"],
        "supported_sizes": ["1280x720", "1080x1920", "1920x1080", "720x1280", "3840x2160", "2160x3840"],
        "supported_durations": [4, 6, 8],
        "supported_frame_images": ["first_frame", "last_frame"],
        "upscale_factor": None,
        "creativity": None,
        "generate_audio": True,
        "seed": True,
        "pricing_skus": {
            "duration_seconds_with_audio": "0.40",
            "duration_seconds_with_audio_4k": "0.60",
            "duration_seconds_without_audio": "0.20",
            "duration_seconds_without_audio_4k": "0.40",
        },
        "allowed_passthrough_parameters": list(_VEO_PASSTHROUGH),
    },
    _model(
        "google/veo-3.1-fast", "20260320", "Google: Veo 3.1 Fast", 1774277149,
        "Veo 3.1 Fast is a faster, lower-cost variant of Veo 3.1 for rapid iteration, generating video "
        "with synchronized audio at 720p, 1080p and 4K...",
        durations=[4, 6, 8], resolutions=["720p", "1080p", "4K"], ratios=["16:9", "9:16"], frames=_FIRST_LAST,
        audio=True, seed=True, passthrough=list(_VEO_PASSTHROUGH),
        pricing={
            "duration_seconds_with_audio": "0.15",
            "duration_seconds_with_audio_4k": "0.30",
            "duration_seconds_with_audio_720p": "0.12",
            "duration_seconds_without_audio": "0.10",
            "duration_seconds_without_audio_4k": "0.25",
            "duration_seconds_without_audio_720p": "0.08",
        },
    ),
    _model(
        "google/veo-3.1-lite", "20260415", "Google: Veo 3.1 Lite", 1776211200,
        "Veo 3.1 Lite is the most affordable Veo 3.1 tier, tuned for high-volume short clips at 720p and "
        "1080p with optional native audio...",
        durations=[8, 4, 6], resolutions=["720p", "1080p"], ratios=["16:9", "9:16"], frames=_FIRST_LAST,
        audio=True, seed=True, passthrough=list(_VEO_PASSTHROUGH),
        pricing={
            "duration_seconds_with_audio": "0.08",
            "duration_seconds_with_audio_720p": "0.05",
            "duration_seconds_without_audio": "0.05",
            "duration_seconds_without_audio_720p": "0.03",
        },
    ),
    _model(
        "openai/sora-2-pro", "20251006", "OpenAI: Sora 2 Pro", 1759708800,
        "Sora 2 Pro is OpenAI's flagship video and audio generation model, with more accurate physics, "
        "sharper realism, synchronized dialogue and sound effects...",
        durations=[4, 8, 12, 16, 20], resolutions=["720p", "1080p"], ratios=["16:9", "9:16"], frames=None,
        audio=True, seed=False, passthrough=["quality", "style"],
        sizes=["1280x720", "720x1280", "1792x1024", "1024x1792", "1920x1080", "1080x1920"],
        pricing={"duration_seconds_720p": "0.30", "duration_seconds_1024p": "0.50", "duration_seconds_1080p": "0.50"},
    ),
    _model(
        "alibaba/wan-2.6", "20251216", "Alibaba: Wan 2.6", 1765843200,
        "Wan 2.6 is Alibaba's multimodal video generation model supporting text-to-video and "
        "image-to-video with native audio, multi-shot storytelling and 1080p output...",
        durations=[5, 10], resolutions=["720p", "1080p"], ratios=["16:9", "9:16"], frames=["first_frame"],
        audio=True, seed=True,
        passthrough=["negative_prompt", "enable_prompt_expansion", "shot_type", "audio", "size"],
        pricing={
            "text_to_video_duration_seconds_480p": "0.04",
            "text_to_video_duration_seconds_720p": "0.08",
            "text_to_video_duration_seconds_1080p": "0.12",
            "image_to_video_duration_seconds_720p": "0.10",
            "image_to_video_duration_seconds_1080p": "0.15",
        },
    ),
    _model(
        "alibaba/wan-2.7", "20260325", "Alibaba: Wan 2.7", 1774396800,
        "Wan 2.7 extends Alibaba's Wan family with first/last-frame control, reference images and "
        "video, prompt extension and synchronized audio at up to 1080p...",
        durations=list(range(2, 11)), resolutions=["720p", "1080p"], ratios=["16:9", "9:16", "1:1", "4:3", "3:4"],
        frames=_FIRST_LAST, audio=True, seed=True,
        passthrough=["negative_prompt", "prompt_extend", "audio", "ratio", "last_image", "video", "videos", "images"],
        pricing={"duration_seconds": "0.1"},
    ),
    _model(
        "bytedance/seedance-2.0", "20260212", "ByteDance: Seedance 2.0", 1770854400,
        "Seedance 2.0 is ByteDance's multimodal video model accepting text, image, audio and video "
        "references, producing cinematic multi-shot video with native audio up to 4K...",
        durations=list(range(4, 16)), resolutions=["480p", "720p", "1080p", "4K"], ratios=list(_SEVEN_RATIOS),
        frames=_FIRST_LAST, audio=True, seed=True, passthrough=["watermark", "req_key"],
        pricing={
            "video_tokens": "0.000007",
            "video_tokens_1080p": "0.0000077",
            "video_tokens_4k": "0.0000098",
            "video_tokens_without_audio": "0.0000035",
            "video_tokens_with_video_input": "0.0000042",
        },
    ),
    _model(
        "bytedance/seedance-2.0-fast", "20260212", "ByteDance: Seedance 2.0 Fast", 1770854401,
        "Seedance 2.0 Fast trades some fidelity for speed and price, generating 480p and 720p video with "
        "native audio from text and image prompts...",
        durations=list(range(4, 16)), resolutions=["480p", "720p"], ratios=list(_SEVEN_RATIOS),
        frames=_FIRST_LAST, audio=True, seed=True, passthrough=["watermark", "req_key"],
        pricing={"video_tokens": "0.0000042"},
    ),
    _model(
        "bytedance/seedance-1-5-pro", "20251223", "ByteDance: Seedance 1.5 Pro", 1766448000,
        "Seedance 1.5 Pro generates audio-visual clips with precise lip sync and multi-language "
        "dialogue from text or images, at up to 1080p...",
        durations=list(range(4, 13)), resolutions=["480p", "720p", "1080p"], ratios=list(_SEVEN_RATIOS),
        frames=_FIRST_LAST, audio=True, seed=True, passthrough=["watermark", "req_key"],
        pricing={"video_tokens": "0.0000024", "video_tokens_without_audio": "0.0000012"},
    ),
    _model(
        "kwaivgi/kling-v3.0-pro", "20260205", "Kling: Kling v3.0 Pro", 1770249600,
        "Kling 3.0 Pro is Kuaishou's high-quality video model with strong motion, multi-shot "
        "consistency and optional native audio, from text or first/last frames...",
        durations=list(range(3, 16)), resolutions=["720p"], ratios=["16:9", "9:16", "1:1"], frames=_FIRST_LAST,
        audio=True, seed=False, passthrough=["negative_prompt", "cfg_scale"],
        pricing={"duration_seconds": "0.112", "duration_seconds_with_audio": "0.168"},
    ),
    _model(
        "kwaivgi/kling-v3.0-std", "20260205", "Kling: Kling v3.0 Standard", 1770249601,
        "Kling 3.0 Standard is the cost-efficient tier of Kling 3.0, with the same controls as Pro "
        "at a lower price...",
        durations=list(range(3, 16)), resolutions=["720p"], ratios=["16:9", "9:16", "1:1"], frames=_FIRST_LAST,
        audio=True, seed=False, passthrough=["negative_prompt", "cfg_scale"],
        pricing={"duration_seconds": "0.084", "duration_seconds_with_audio": "0.126"},
    ),
    _model(
        "kwaivgi/kling-video-o1", "20251201", "Kling: Kling Video O1", 1764547200,
        "Kling Video O1 is a unified multimodal model for generation and editing of video from text, "
        "images and reference subjects...",
        durations=[5, 10], resolutions=["720p"], ratios=["16:9", "9:16", "1:1"], frames=_FIRST_LAST,
        audio=True, seed=False, passthrough=["negative_prompt"],
        pricing={"duration_seconds": "0.1120"},
    ),
    _model(
        "minimax/hailuo-2.3", "20251028", "MiniMax: Hailuo 2.3", 1761609600,
        "Hailuo 2.3 is MiniMax's video model with improved body motion, physics and stylization, "
        "producing 1080p clips from text or a first frame...",
        durations=[6, 10], resolutions=["1080p"], ratios=["16:9"], frames=["first_frame"],
        audio=False, seed=None, passthrough=["prompt_optimizer", "fast_pretreatment"],
        pricing={"duration_seconds": "0.0817"},
    ),
    _model(
        "minimax/hailuo-3", "20260410", "MiniMax: Hailuo 3", 1775779200,
        "Hailuo 3 generates 2K video with native audio, reference images and first/last frame control "
        "across six aspect ratios...",
        durations=list(range(5, 16)), resolutions=["2K"], ratios=["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"],
        frames=_FIRST_LAST, audio=True, seed=False, passthrough=["aigc_watermark"], sizes=None,
        pricing={"duration_seconds": "0.13", "reference_images": "0.04"},
    ),
    _model(
        "x-ai/grok-imagine-video", "20260128", "xAI: Grok Imagine Video", 1769558400,
        "Grok Imagine Video is xAI's fast video generation model, turning text or a single image into "
        "short clips with sound at 480p or 720p...",
        durations=list(range(1, 16)), resolutions=["480p", "720p"],
        ratios=["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"], frames=["first_frame"],
        audio=None, seed=None, passthrough=[],
        pricing={
            "cents_per_image_input": "0.2",
            "cents_per_video_output_second_480p": "5",
            "cents_per_video_output_second_720p": "7",
        },
    ),
    _model(
        "runway/gen-4.5", "20251201", "Runway: Gen-4.5", 1764547201,
        "Runway Gen-4.5 delivers state-of-the-art motion quality, prompt adherence and visual fidelity "
        "for text-to-video and image-to-video...",
        durations=list(range(2, 11)), resolutions=["720p"], ratios=["16:9", "9:16"], frames=["first_frame"],
        audio=False, seed=True, passthrough=["contentModeration"],
        pricing={"cents_per_second_output": "12"},
    ),
    _model(
        "runway/aleph-2", "20260301", "Runway: Aleph 2", 1772323200,
        "Aleph 2 is Runway's in-context video model for editing, transforming and extending an input "
        "video with text instructions and keyframes...",
        durations=None, resolutions=None, ratios=["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"],
        frames=None, audio=False, seed=True, passthrough=["contentModeration", "keyframes"], sizes=None,
        pricing={"cents_per_second_output": "28", "minimum_cents_per_generation": "56"},
    ),
    _model(
        "black-forest-labs/flux-video-upscale", "20260305", "Black Forest Labs: FLUX Video Upscale", 1772668800,
        "FLUX Video Upscale increases the resolution of an input video by 1.5x to 3x, in a precise "
        "mode that preserves detail or a creative mode that adds it...",
        durations=None, resolutions=None, ratios=None, frames=None, audio=False, seed=False,
        passthrough=["safety_tolerance"], sizes=None,
        upscale_factor={"min": 1.5, "max": 3},
        creativity=[0, 1],
        pricing={"cents_per_megapixel_second_precise": "7.5", "cents_per_megapixel_second_creative": "10.5"},
    ),
]  # fmt: skip


def find_model(catalog: list[dict[str, Any]], model_id: str) -> dict[str, Any] | None:
    """The entry whose `id` is exactly `model_id` (no prefix stripping, like the real API)."""
    return next((m for m in catalog if m.get("id") == model_id), None)
