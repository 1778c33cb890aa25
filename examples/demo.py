"""`make demo`: the whole flow on this machine, against the built-in simulator.

Starts the simulator and the receiver as real processes on free loopback ports, submits three jobs
with callback URLs (one normal, one whose webhook the simulator drops so the polling fallback
recovers it, one that fails upstream), shows their progress live, then prints each job's record
and the path of each downloaded MP4. Then an app with a token of its own submits through the
receiver and is told by a signed notification (examples/demo_gateway.py). Stops everything it
started, whatever happens.

`--ui` (`make demo-ui`): then prints the dashboard's URL and the token to sign in with, and leaves the
simulator and the receiver running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from demo_gateway import run_app  # examples/ is on the path: the demo runs as a script

from openrouter_video import OpenRouterVideo, OpenRouterVideoError

DEADLINE = 60.0
MODEL = "google/veo-3.1"
JOBS = (
    ("normal", "a red fox trotting through fresh snow at dawn"),
    ("webhook dropped", "[sim:webhook=drop] a paper boat drifting down a rain gutter"),
    ("fails upstream", "[sim:outcome=failed] a scene the provider refuses"),
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_up(url: str, process: subprocess.Popen, name: str, log: Path, headers: dict | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the {name} exited at start-up:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: the {name} did not start within 20 s (log: {log})")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The whole flow against the built-in simulator.")
    parser.add_argument(
        "--ui", action="store_true", help="then keep the receiver running and print the dashboard's URL"
    )
    ui = parser.parse_args(argv).ui
    root = Path("demo-data").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    api_key, secret, token = (
        f"{p}-{secrets.token_hex(12)}" for p in ("sk-or-demo", "whsec-demo", "rx-token")
    )
    sim_port, rx_port = _free_port(), _free_port()
    sim_base = f"http://127.0.0.1:{sim_port}/api/v1"
    rx_url = f"http://127.0.0.1:{rx_port}"
    auth = {"Authorization": f"Bearer {token}"}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    cli = [sys.executable, "-m", "openrouter_video._cli"]
    sim_log, rx_log = root / "simulator.log", root / "receiver.log"

    print(
        f"simulator: openrouter-video simulate --port {sim_port}   (log: {sim_log.relative_to(Path.cwd())})"
    )
    app_token, app_secret = _create_app_token(cli, base_env, root / "receiver")
    print(
        f"receiver:  openrouter-video serve --port {rx_port}        (log: {rx_log.relative_to(Path.cwd())})"
    )
    processes: list[subprocess.Popen] = []
    try:
        with open(sim_log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        *cli,
                        "simulate",
                        "--port",
                        str(sim_port),
                        "--api-key",
                        api_key,
                        "--webhook-secret",
                        secret,
                        "--pending",
                        "1",
                        "--in-progress",
                        "2",
                        "--log-level",
                        "warning",
                    ],
                    env=base_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        with open(rx_log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    [*cli, "serve", "--port", str(rx_port), "--data-dir", str(root / "receiver")],
                    env={
                        **base_env,
                        "OPENROUTER_API_KEY": api_key,
                        "OPENROUTER_BASE_URL": sim_base,
                        "OPENROUTER_WEBHOOK_SECRET": secret,
                        "RECEIVER_API_TOKEN": token,
                        "RECEIVER_PUBLIC_URL": rx_url,
                        # The demo's app listens on loopback; a deployed receiver refuses that.
                        "RECEIVER_NOTIFY_ALLOW_PRIVATE": "true",
                        "RECEIVER_FALLBACK_AFTER": "6",
                        "RECEIVER_POLL_FIRST_INTERVAL": "1",
                        "RECEIVER_LOG_FORMAT": "json",
                    },
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_up(
            f"{sim_base}/videos/models",
            processes[0],
            "simulator",
            sim_log,
            {"Authorization": f"Bearer {api_key}"},
        )
        _wait_up(f"{rx_url}/healthz", processes[1], "receiver", rx_log)
        status = _run(sim_base, api_key, rx_url, auth, root)
        if status == 0:
            status = run_app(rx_url, app_token, app_secret, MODEL)
        if ui:
            _serve_dashboard(rx_url, token, processes)
        return status
    except OpenRouterVideoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 3
    finally:
        for process in reversed(processes):
            _stop(process)


def _create_app_token(cli: list[str], env: dict[str, str], data_dir: Path) -> tuple[str, str]:
    """`openrouter-video tokens create demo-app --role submit`: the app's token and its notification
    secret, each shown once."""
    command = [*cli, "tokens", "create", "demo-app", "--role", "submit", "--data-dir", str(data_dir)]
    made = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if made.returncode != 0:
        raise SystemExit(f"demo: tokens create failed: {made.stderr.strip() or made.stdout.strip()}")
    shown = dict(line.split(":", 1) for line in made.stdout.splitlines() if ":" in line)
    print(
        f"app token: openrouter-video tokens create demo-app --role submit --data-dir {data_dir.relative_to(Path.cwd())}"
    )
    return shown["token"].strip(), shown["notify secret"].strip()


def _run(sim_base: str, api_key: str, rx_url: str, auth: dict, root: Path) -> int:
    labels: dict[str, str] = {}
    with (
        OpenRouterVideo(api_key=api_key, base_url=sim_base) as api,
        httpx.Client(base_url=rx_url, headers=auth) as rx,
    ):
        print(f"\nsubmitting {len(JOBS)} jobs to {MODEL} with callback_url={rx_url}/webhooks/openrouter")
        for label, prompt in JOBS:
            job = api.submit(
                prompt,
                model=MODEL,
                duration=4,
                resolution="720p",
                aspect_ratio="16:9",
                callback_url=f"{rx_url}/webhooks/openrouter",
            )
            rx.post("/jobs", json={"id": job.id, "model": MODEL, "prompt": prompt}).raise_for_status()
            labels[job.id] = label
            print(f"  {label:<16} {job.id}")
        print("\nprogress (status changes as the receiver records them):")
        started = time.monotonic()
        seen: dict[str, str] = {}
        records: dict[str, dict] = {}
        while time.monotonic() - started < DEADLINE:
            for job_id, label in labels.items():
                record = rx.get(f"/jobs/{job_id}").json()
                records[job_id] = record
                outputs = ",".join(o["state"] for o in record["outputs"]) or "-"
                summary = f"{record['status']} (via {record['source']}), outputs: {outputs}"
                if record["status"] in ("pending", "in_progress"):
                    # What OpenRouter says right now; the receiver itself only hears terminal webhooks.
                    summary += f"; upstream says {api.get(job_id).status}"
                if seen.get(job_id) != summary:
                    seen[job_id] = summary
                    print(f"  [{time.monotonic() - started:5.1f}s] {label:<16} {summary}")
            if all(_settled(r) for r in records.values()):
                break
            time.sleep(0.25)
        else:
            print(
                f"demo: not every job settled within {DEADLINE:.0f}s; see {root}/receiver.log",
                file=sys.stderr,
            )
            return 1
    print("\nrecords:")
    for job_id, record in records.items():
        print(f"  {labels[job_id]}: {job_id}")
        print(
            f"    status {record['status']} via {record['source']}; cost {record['cost']}; error {record['error']}"
        )
        print("    events: " + ", ".join(_event_text(e) for e in record["events"]))
        for output in record["outputs"]:
            path = root / "receiver" / "videos" / job_id / f"{output['index']}.mp4"
            print(
                f"    output {output['index']}: {path.relative_to(Path.cwd())} ({output['bytes']} bytes, "
                f"sha256 {output['sha256'][:16]}...)"
            )
            if not path.is_file() or path.stat().st_size != output["bytes"]:
                print(f"demo: {path} is missing or the wrong size", file=sys.stderr)
                return 1
    expected = {
        "normal": ("completed", "webhook"),
        "webhook dropped": ("completed", "poll"),
        "fails upstream": ("failed", "webhook"),
    }
    wrong = [labels[j] for j, r in records.items() if (r["status"], r["source"]) != expected[labels[j]]]
    if wrong:
        print(f"demo: unexpected outcome for {', '.join(wrong)}", file=sys.stderr)
        return 1
    data_dir = (root / "receiver").relative_to(Path.cwd())
    print(f"\nall done in {time.monotonic() - started:.1f}s. The records stay on disk; look at them with:")
    print(f"  openrouter-video jobs list --data-dir {data_dir}")
    print(f"  openrouter-video jobs show JOB_ID --data-dir {data_dir}")
    return 0


def _serve_dashboard(rx_url: str, token: str, processes: list[subprocess.Popen]) -> None:
    """Leave the receiver (and the simulator) running for the dashboard until Ctrl-C."""
    print(f"\ndashboard: {rx_url}/ui/")
    print(f"sign in with the demo's API token: {token}")
    print("the receiver keeps running; press Ctrl-C to stop it")

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the servers are stopped on the way out

    signal.signal(signal.SIGTERM, interrupted)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("demo: a server exited; see the logs under demo-data/", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping")


def _event_text(event: dict) -> str:
    status = f" {event['status']}" if event["status"] else ""
    return f"{event['kind']}{status} ({event['source']})"


def _settled(record: dict) -> bool:
    if record["status"] == "completed":
        return bool(record["outputs"]) and all(
            o["state"] in ("done", "gone", "failed") for o in record["outputs"]
        )
    return record["status"] in ("failed", "cancelled", "expired")


if __name__ == "__main__":
    sys.exit(main())
