"""`simulate`: run the offline OpenRouter video API simulator."""

from __future__ import annotations

from typing import Any

import click


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--webhook-secret",
    envvar="OPENROUTER_WEBHOOK_SECRET",
    show_envvar=True,
    help="Secret to sign webhooks with (default: none, webhooks are sent unsigned).",
)
@click.option(
    "--api-key", "sim_api_key", help="The API key the simulator accepts (default: any non-empty key)."
)
@click.option(
    "--workspace-webhook-url",
    help="Default webhook URL for jobs without callback_url (default: none, no webhook for them).",
)
@click.option(
    "--pending", type=click.FloatRange(min=0), show_default="2", help="Seconds a job stays pending."
)
@click.option(
    "--in-progress", type=click.FloatRange(min=0), show_default="5", help="Seconds a job stays in_progress."
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def simulate_cmd(
    host: str,
    port: int,
    webhook_secret: str | None,
    sim_api_key: str | None,
    workspace_webhook_url: str | None,
    pending: float | None,
    in_progress: float | None,
    log_level: str,
) -> None:
    """Run the offline OpenRouter video API simulator.

    \b
    Examples:
      openrouter-video simulate --port 8080 --webhook-secret whsec-dev --pending 2 --in-progress 5
      OPENROUTER_BASE_URL=http://127.0.0.1:8080/api/v1 openrouter-video models
    """
    try:
        from .._simulator import SimulatorConfig, serve
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"the simulator needs its server ({exc.name} is not installed): "
            "pip install 'openrouter-video[simulator]'"
        ) from None

    options: dict[str, Any] = {
        "webhook_secret": webhook_secret,
        "api_key": sim_api_key,
        "workspace_webhook_url": workspace_webhook_url,
        "pending_seconds": pending,
        "in_progress_seconds": in_progress,
    }
    config = SimulatorConfig(**{k: v for k, v in options.items() if v is not None})
    serve(config, host=host, port=port, log_level=log_level)
