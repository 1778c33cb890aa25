"""The model catalog commands: `models` and `model`."""

from __future__ import annotations

import click

from .format import describe_model, emit_json, models_table, with_iso_times
from .options import json_option
from .state import CliState, pass_state


@click.command("models")
@json_option("Print the catalog as JSON.")
@pass_state
def models_cmd(state: CliState, as_json: bool) -> None:
    """List the video models and what each supports.

    \b
    Examples:
      openrouter-video models
      openrouter-video models --json | jq -r '.[].id'
    """
    models = sorted(state.one_shot_client().models(), key=lambda m: m.id)
    if as_json:
        emit_json([with_iso_times(m.raw) for m in models])
        return
    click.echo(models_table(models))


@click.command("model")
@click.argument("model_id", metavar="ID")
@json_option("Print the catalog entry as JSON.")
@pass_state
def model_cmd(state: CliState, model_id: str, as_json: bool) -> None:
    """Show everything the catalog says about one model.

    \b
    Examples:
      openrouter-video model google/veo-3.1
      openrouter-video model google/veo-3.1 --json
    """
    model = state.one_shot_client().model(model_id)
    if as_json:
        emit_json(with_iso_times(model.raw))
    else:
        click.echo(describe_model(model))
