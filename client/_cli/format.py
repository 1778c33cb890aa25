"""What commands print on stdout: JSON records, tables and `key: value` descriptions."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Iterable
from typing import Any

import click

from .._pricing import estimate_cost, price_rows
from .._types import DownloadResult, VideoJob, VideoModel

# OpenRouter's fields that are Unix seconds: printed (human and --json) as ISO 8601 UTC instead.
UNIX_TIME_FIELDS = ("expires_at", "created")


def iso_utc(unix: float) -> str:
    """`2026-12-04T10:00:00Z`: the one time format the client CLI prints (raises on out-of-range)."""
    return _dt.datetime.fromtimestamp(int(unix), tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_iso_times(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of an API object with its Unix-seconds fields as ISO 8601 UTC (others untouched)."""
    out = dict(record)
    for name in UNIX_TIME_FIELDS:
        value = out.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            with contextlib.suppress(OverflowError, OSError, ValueError):
                out[name] = iso_utc(value)
    return out


def job_record(job: VideoJob, **extra: Any) -> dict[str, Any]:
    """The machine-readable form of a job: OpenRouter's own fields (times as ISO 8601), plus ours."""
    record = with_iso_times(job.raw)
    record.setdefault("id", job.id)
    record.setdefault("status", job.status)
    record.update(extra)
    return record


def download_record(result: DownloadResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "content_type": result.content_type,
    }


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False, default=str))


def _list(values: Iterable[Any] | None, *, sort: bool = False) -> str:
    if values is None:
        return "?"
    items = sorted(values) if sort else list(values)
    return ",".join(str(v) for v in items) if items else "-"


def _flag(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def models_table(models: Iterable[VideoModel]) -> str:
    """One row per model: what it supports."""
    rows = [
        [
            m.id,
            _list(m.supported_durations, sort=True),
            _list(m.supported_resolutions),
            _list(m.supported_aspect_ratios),
            _flag(m.generate_audio),
            _flag(m.seed),
            price_text(m),
        ]
        for m in models
    ]
    return _table(
        ["ID", "DURATIONS", "RESOLUTIONS", "ASPECT RATIOS", "AUDIO", "SEED", "PRICE PER SECOND"], rows
    )


def usd(amount: float) -> str:
    """`$0.40`, or all the digits a price has (`$0.0817`)."""
    return f"${amount:.2f}" if round(amount, 2) == amount else f"${amount:.4g}"


def price_text(model: VideoModel) -> str:
    """The price per second, by resolution and audio where the SKUs distinguish them, e.g.
    `720p,1080p: $0.40 with audio, $0.20 without; 4K: $0.60 with audio, $0.40 without`."""
    rows = price_rows(model)
    if rows is None:
        reason = estimate_cost(model, {}).reason or ""
        if "video token" in reason:
            return "per video token (no estimate)"
        if "megapixel" in reason:
            return "per megapixel-second of input (no estimate)"
        return "-" if not model.pricing_skus else "not per second (no estimate)"
    groups: dict[tuple[str, ...] | None, list[str]] = {}
    for row in rows:
        price = usd(row.usd_per_second)
        label = "" if row.audio is None else (" with audio" if row.audio else " without")
        groups.setdefault(row.resolutions, []).append(price + label)
    return "; ".join(
        (f"{','.join(resolutions)}: " if resolutions else "") + ", ".join(prices)
        for resolutions, prices in groups.items()
    )


def _when(unix: int | None) -> str:
    if unix is None:
        return "-"
    try:
        return iso_utc(unix)
    except (OverflowError, OSError, ValueError):
        return str(unix)


def describe_job(job: VideoJob) -> str:
    rows: list[tuple[str, str]] = [("id", job.id), ("status", job.status)]
    if job.model:
        rows.append(("model", job.model))
    if job.generation_id:
        rows.append(("generation_id", job.generation_id))
    if job.error:
        rows.append(("error", job.error))
    if job.status == "completed":
        rows.append(("outputs", str(job.output_count)))
    if job.usage is not None:
        cost = "unknown" if job.usage.cost is None else f"${job.usage.cost:.4f}"
        rows.append(("cost", f"{cost} (byok: {_flag(job.usage.is_byok)})"))
    if job.expires_at is not None:
        rows.append(("expires_at", _when(job.expires_at)))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in rows)


def describe_model(model: VideoModel) -> str:
    rows: list[tuple[str, str]] = [
        ("id", model.id),
        ("name", model.name or "-"),
        ("canonical_slug", model.canonical_slug or "-"),
        ("created", _when(model.created)),
        ("hugging_face_id", model.hugging_face_id or "-"),
        ("durations", _list(model.supported_durations, sort=True)),
        ("resolutions", _list(model.supported_resolutions)),
        ("aspect_ratios", _list(model.supported_aspect_ratios)),
        ("sizes", _list(model.supported_sizes)),
        ("frame_images", _list(model.supported_frame_images)),
        ("audio", _flag(model.generate_audio)),
        ("seed", _flag(model.seed)),
        (
            "upscale_factor",
            "-"
            if model.upscale_factor is None
            else ", ".join(f"{k}={v}" for k, v in model.upscale_factor.items()),
        ),
        ("creativity", _list(model.creativity) if model.creativity is not None else "-"),
        ("passthrough", _list(model.allowed_passthrough_parameters)),
    ]
    rows.append(("price per second", price_text(model)))
    if model.pricing_skus:
        rows.extend((f"price {sku}", price) for sku, price in sorted(model.pricing_skus.items()))
    else:
        rows.append(("pricing", "-"))
    width = max(len(k) for k, _ in rows) + 1
    text = "\n".join(f"{(k + ':').ljust(width)} {v}" for k, v in rows)
    if model.description:
        text += f"\n\n{model.description}"
    return text


def print_download(result: DownloadResult, *, err: bool = False) -> None:
    """Path, size and sha256 on stdout (on stderr when the video itself went to stdout)."""
    click.echo(f"{result.path}\t{result.bytes} bytes\tsha256 {result.sha256}", err=err)
