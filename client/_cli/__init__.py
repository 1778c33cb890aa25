"""`openrouter-video`: a thin command line over `OpenRouterVideo`.

Every error is mapped to an exit code in exactly one place, `errors.run_mapped` (called by
`VideoGroup.main`). Commands from other packages (the receiver's `serve`, `webhook`) are plugged
in through the entry point group `openrouter_video.commands`; this package never imports them by name.

state.py          CliState (group options, the client, the job in hand), PROG
errors.py         exit codes, the `error: ...` line, the one error mapping, interruptions
group.py          the `cli` group, its options and help, built-in commands, the plugin loader, main
options.py        options shared between commands (--timeout/--poll-interval, --json, -o, JOB)
display.py        terminal widgets: StatusDisplay, DownloadProgress
format.py         stdout: JSON records, the models table, job and model descriptions
receiver_link.py  RECEIVER_* variables: callback URL, registering jobs with the receiver
catalog.py        models, model
submit.py         submit
jobs.py           status, wait, download
simulate.py       simulate
receiver_cmds.py  jobs list|show, deliveries, reprocess: over HTTP (ReceiverClient) or the receiver's
                  local implementations (entry point group `openrouter_video.local_commands`)
records.py        how the receiver's records print (shared with those local implementations)
usage_cmd.py      usage: the receiver's spend and spending caps (GET /usage)
"""

from __future__ import annotations

# `entry_points` is looked up here at call time by the plugin loader: the seam to replace it.
from importlib.metadata import entry_points

from .display import DownloadProgress, StatusDisplay
from .errors import (
    EXIT_API,
    EXIT_INTERRUPTED,
    EXIT_JOB_UNSUCCESSFUL,
    EXIT_OK,
    EXIT_STILL_RUNNING,
    EXIT_USAGE,
    error_line,
    exit_code_for,
    run_mapped,
)
from .format import describe_job, describe_model, download_record, emit_json, job_record, print_download
from .group import GROUP_HELP, PLUGIN_GROUP, PluginLoadError, VideoGroup, cli, main
from .receiver_link import (
    RECEIVER_TIMEOUT,
    receiver_callback_url,
    register_with_receiver,
)
from .state import PROG, CliState, pass_state

__all__ = [
    "EXIT_API",
    "EXIT_INTERRUPTED",
    "EXIT_JOB_UNSUCCESSFUL",
    "EXIT_OK",
    "EXIT_STILL_RUNNING",
    "EXIT_USAGE",
    "GROUP_HELP",
    "PLUGIN_GROUP",
    "PROG",
    "RECEIVER_TIMEOUT",
    "CliState",
    "DownloadProgress",
    "PluginLoadError",
    "StatusDisplay",
    "VideoGroup",
    "cli",
    "describe_job",
    "describe_model",
    "download_record",
    "emit_json",
    "entry_points",
    "error_line",
    "exit_code_for",
    "job_record",
    "main",
    "pass_state",
    "print_download",
    "receiver_callback_url",
    "register_with_receiver",
    "run_mapped",
]
