"""The typed state shared through the app: built once in the lifespan, read by every endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from openrouter_video import AsyncOpenRouterVideo

from .content import ContentStore
from .metrics import Metrics
from .settings import Settings
from .store import JobStore

if TYPE_CHECKING:
    from .applier import Applier
    from .fetcher import Fetcher


@dataclass
class ReceiverState:
    settings: Settings
    store: JobStore
    content: ContentStore
    client: AsyncOpenRouterVideo
    metrics: Metrics
    fetcher: Fetcher
    applier: Applier
    secrets: list[str]


def state_of(request: Request) -> ReceiverState:
    return request.state.receiver
