"""The Submit page's form, without I/O: what a model's catalog entry lets the form offer, the form's
values as typed, and the `POST /jobs` body they make.

The form only offers what the chosen model's catalog entry allows (its durations, resolutions, aspect
ratios; audio unless it cannot make any; a seed unless it takes none). Where the catalog says nothing
(`None`: unknown, not enforced), the form offers what the API accepts for any model, with the
model's default first. The body is then checked by the same code as `POST /jobs`
(`receiver.submit_request` and the submitter's catalog check); the errors those raise are shown next
to the field they name (`field_of`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openrouter_video import ValidationError, VideoModel
from openrouter_video._pricing import PriceRow, estimate_cost, price_rows
from openrouter_video._types import ASPECT_RATIOS, RESOLUTIONS

from ..contract import MAX_PROMPT_CHARS, ContractError

# The form's fields, in the order they are shown; `form` is for errors that belong to no one field.
FIELDS = ("model", "duration", "resolution", "aspect_ratio", "audio", "seed", "prompt")
_BODY_TO_FORM = {"generate_audio": "audio", "model": "model"}
AUDIO_ON, AUDIO_OFF = "on", "off"
MAX_DIGITS = 18  # what fits a 64-bit integer, as the API takes it
_WHOLE = re.compile(r"^-?[0-9]+$")


@dataclass(frozen=True)
class Choices:
    """What the form offers for one model. An empty first option ("") is the model's own default,
    offered only where the catalog does not list the allowed values."""

    model: VideoModel
    durations: tuple[int, ...] | None  # None: the catalog lists none; any whole number of seconds
    resolutions: tuple[str, ...]
    resolutions_listed: bool
    aspect_ratios: tuple[str, ...]
    aspect_ratios_listed: bool
    audio: tuple[str, ...]  # () when the model cannot generate audio
    seed: bool
    prices: list[PriceRow] | None
    no_estimate: str | None  # why no estimate can be made for this model (None: it can)


def choices_for(model: VideoModel) -> Choices:
    durations = tuple(sorted(d for d in model.supported_durations or () if isinstance(d, int)))
    resolutions = tuple(model.supported_resolutions or ())
    ratios = tuple(model.supported_aspect_ratios or ())
    audio: tuple[str, ...] = (
        ()
        if model.generate_audio is False
        else (AUDIO_ON, AUDIO_OFF)
        if model.generate_audio
        else ("", AUDIO_ON, AUDIO_OFF)
    )
    prices = price_rows(model)
    return Choices(
        model=model,
        durations=durations or None,
        resolutions=resolutions or ("", *RESOLUTIONS),
        resolutions_listed=bool(resolutions),
        aspect_ratios=ratios or ("", *ASPECT_RATIOS),
        aspect_ratios_listed=bool(ratios),
        audio=audio,
        seed=model.seed is not False,
        prices=prices,
        no_estimate=None if prices else estimate_cost(model, {}).reason,
    )


@dataclass
class Draft:
    """The form as typed (every value a string; "" where nothing was given)."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, get: Callable[[str], str | None]) -> Draft:
        return cls(
            {name: (get(name) or "").strip() if name != "prompt" else get(name) or "" for name in FIELDS}
        )

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def fitted(self, choices: Choices) -> Draft:
        """These values for the chosen model: a value it does not offer becomes its first choice (the
        shortest duration, the first listed resolution and aspect ratio); a seed it takes none of is
        dropped; the prompt is kept."""
        values = dict(self.values, model=choices.model.id)
        if choices.durations is not None and _int(values.get("duration", "")) not in choices.durations:
            values["duration"] = str(choices.durations[0])
        for name, offered in (("resolution", choices.resolutions), ("aspect_ratio", choices.aspect_ratios)):
            if values.get(name, "") not in offered:
                values[name] = offered[0]
        if choices.audio and values.get("audio", "") not in choices.audio:
            values["audio"] = choices.audio[0]
        if not choices.audio:
            values["audio"] = ""
        if not choices.seed:
            values["seed"] = ""
        return Draft(values)

    def payload(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The `POST /jobs` body these values make, and an error per field that is not even a number
        where one is needed (what remains is checked by the submit path itself)."""
        errors: dict[str, str] = {}
        body: dict[str, Any] = {"model": self.get("model")}
        if self.get("prompt").strip():
            body["prompt"] = self.get("prompt")
        if len(self.get("prompt")) > MAX_PROMPT_CHARS:
            errors["prompt"] = (
                f"the prompt is {len(self.get('prompt')):,} characters; at most {MAX_PROMPT_CHARS:,}"
            )
        for name in ("duration", "seed"):
            raw = self.get(name)
            if not raw:
                continue
            number = _int(raw)
            if number is None or len(raw) > MAX_DIGITS:
                errors[name] = f"{name} must be a whole number, got {raw[:40]!r}"
            else:
                body[name] = number
        for name in ("resolution", "aspect_ratio"):
            if self.get(name):
                body[name] = self.get(name)
        audio = self.get("audio")
        if audio in (AUDIO_ON, AUDIO_OFF):
            body["generate_audio"] = audio == AUDIO_ON
        elif audio:
            errors["audio"] = f"audio must be {AUDIO_ON!r} or {AUDIO_OFF!r}, got {audio[:40]!r}"
        return body, errors


def field_of(exc: ValidationError | ContractError) -> tuple[str, str]:
    """(the form field an error of the submit path belongs to, its one-line message)."""
    if isinstance(exc, ValidationError):
        name, message = exc.field, exc.message
    else:  # "field: what is wrong" (contract.parse)
        name, _, rest = str(exc).partition(": ")
        message = str(exc) if not rest else f"{name}: {rest}"
    name = _BODY_TO_FORM.get(name, name)
    return (name if name in FIELDS else "form"), message.splitlines()[0] if message else "not valid"


def _int(raw: str) -> int | None:
    return int(raw) if _WHOLE.fullmatch(raw) else None
