"""What one invocation knows: the group options, the lazily built client, and the job in hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from .._base import RetryEvent
from .._client import OpenRouterVideo
from .._exceptions import ValidationError

PROG = "openrouter-video"
# Seconds a one-shot command (models, model, status) may take in all, retries included.
ONE_SHOT_DEADLINE = 60.0


def _say_retry(event: RetryEvent) -> None:
    """The library is silent; the command line says each retry on stderr, as it happens."""
    click.echo(f"retry: {event.describe()}", err=True)


@dataclass
class CliState:
    """What the group options configured, and what the error mapping needs to know afterwards."""

    api_key: str | None = None
    base_url: str | None = None
    verbose: bool = False
    deadline: float | None = None  # --deadline: seconds for a one-shot command (None: ONE_SHOT_DEADLINE)
    job_id: str | None = None  # the job a command is working on, for resume advice
    resume: str | None = None  # the command that picks the work up again
    submitting: bool = False  # a submit request is in flight (its outcome unknown if interrupted)
    submitted: bool = False  # this invocation created (and pays for) `job_id`
    _client: OpenRouterVideo | None = field(default=None, repr=False)

    def client(self) -> OpenRouterVideo:
        if self._client is None:
            self._client = OpenRouterVideo(api_key=self.api_key, base_url=self.base_url, on_retry=_say_retry)
            click.get_current_context().call_on_close(self._client.close)
        return self._client

    def one_shot_client(self, *, keyed: bool = False) -> OpenRouterVideo:
        """The client for a one-request command (models, model, status): bounded by --deadline."""
        api = self.keyed_client() if keyed else self.client()
        api.set_deadline(self.deadline if self.deadline is not None else ONE_SHOT_DEADLINE)
        return api

    def keyed_client(self) -> OpenRouterVideo:
        """The client, for a command that needs the API key: a missing key is said before sending."""
        if not self.api_key:
            command = click.get_current_context().command_path
            raise ValidationError(
                "api_key",
                None,
                f"no API key: set OPENROUTER_API_KEY (or --api-key); '{command}' needs one",
            )
        return self.client()

    def working_on(self, job_id: str, resume: str) -> None:
        self.job_id = job_id
        self.resume = resume


pass_state = click.make_pass_decorator(CliState, ensure=True)
