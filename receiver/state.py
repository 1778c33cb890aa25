"""The typed state shared through the app: built once in the lifespan, read by every endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from openrouter_video import AsyncOpenRouterVideo

from .metrics import Metrics
from .settings import Settings
from .storage.base import Stores

if TYPE_CHECKING:
    from .auth import TokenAuth
    from .submitting import Submitter
    from .watch import JobWatch
    from .workers.applier import Applier
    from .workers.fetcher import Fetcher


@dataclass
class ReceiverState:
    settings: Settings
    stores: Stores
    client: AsyncOpenRouterVideo
    metrics: Metrics
    fetcher: Fetcher
    applier: Applier
    secrets: list[str]
    submitter: Submitter
    watch: JobWatch  # long-polls and event streams (one change-feed reader per process)
    auth: TokenAuth  # bearer tokens to principals (the API's guard and the dashboard's sign-in)


def state_of(request: Request) -> ReceiverState:
    return request.state.receiver
