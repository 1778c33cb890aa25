"""The shipped deployment files, run for real: nginx (and Caddy, where installed) with TLS in front
of a real receiver process, the systemd unit through `systemd-analyze`, and static checks of the
container files and env.example.

The nginx config under test is rendered from deploy/nginx/openrouter-video.conf by substituting only
ports, certificate paths, the upstream port and the ACME webroot (each substitution is counted, so a
changed file fails loudly instead of being silently skipped; tests/nginx_support.py, shared with the
replica test). The Caddyfile runs as shipped, with
its SITE_ADDRESS/UPSTREAM placeholders set and test-only global options (ports, local CA) prepended.

nginx and openssl are required in CI (.ci/run installs them); elsewhere the tests that need them
skip with the reason. Caddy and systemd-analyze are optional: their tests skip when absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nginx_support import (
    DEPLOY,
    ROOT,
    find_tool,
    require_tool,
    running_nginx,
    stop_process,
)
from receiver_support import (
    AUTH,
    ReceiverProcess,
    free_port,
    receiver_settings,
    signed_event,
    stored_deliveries,
    wait_until,
)
from support import running_simulator

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from openrouter_video.receiver.settings import Settings
from openrouter_video.receiver.storage.sqlite._db import connect
from openrouter_video.receiver.storage.sqlite.jobs import get_job

CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
UNIT = DEPLOY / "systemd" / "openrouter-video.service"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"

CAP = Settings.__dataclass_fields__["max_body_bytes"].default  # the receiver's default body cap (1 MiB)
FORGED_XFF = "203.0.113.9"
UNTRUSTED_SOURCE = "127.0.0.2"  # a loopback address that is not a trusted proxy


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("openrouter-video")
    return [str(script)] if script.exists() else [sys.executable, "-m", "openrouter_video._cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
    env.update(extra)
    return env


# -- the stack: receiver process, self-signed certificate, nginx from the shipped site config ----------


@dataclass
class Stack:
    receiver: ReceiverProcess
    secret: str
    cert: str
    https_port: int
    http_port: int
    acme_root: Path
    tmp: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.https_url}/webhooks/openrouter"

    def client(self, local_address: str | None = None) -> httpx.Client:
        transport = httpx.HTTPTransport(
            verify=ssl.create_default_context(cafile=self.cert), local_address=local_address
        )
        return httpx.Client(transport=transport, timeout=15, follow_redirects=False)

    def deliveries(self) -> dict[str, dict]:
        return {d["idempotency_key"]: d for d in stored_deliveries(self.receiver.settings)}

    def job(self, job_id: str) -> dict | None:
        with contextlib.closing(connect(self.receiver.settings.db_path, readonly=True)) as conn:
            record = get_job(conn, job_id)
        return dataclasses.asdict(record) if record is not None else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    require_tool("nginx")
    tmp = tmp_path_factory.mktemp("deploy")
    with running_simulator() as sim:
        settings = receiver_settings(str(tmp / "data"), sim)
        receiver = ReceiverProcess(
            settings, extra_args=["--host", "127.0.0.1", "--trusted-proxies", "127.0.0.1"]
        )
        try:
            receiver.start()
            with running_nginx(tmp, [receiver.port]) as nginx:
                yield Stack(
                    receiver=receiver,
                    secret=sim.secret,
                    cert=nginx.cert,
                    https_port=nginx.https_port,
                    http_port=nginx.http_port,
                    acme_root=nginx.acme_root,
                    tmp=tmp,
                )
        finally:
            receiver.stop()


def failed_event(
    secret: str, job_id: str, pad: int = 0, size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A terminal event that needs no download (so the receiver stays quiet after recording it).

    `size`: pad the error text so the body is exactly this many bytes.
    """
    if size is not None:
        pad = size - len(failed_event(secret, job_id)[0])
    return signed_event(
        secret,
        {
            "id": job_id,
            "status": "failed",
            "generation_id": None,
            "model": "test/model",
            "error": "provider error" + "x" * pad,
        },
    )


# -- 1. `openrouter-video webhook test` through nginx ------------------------------------------------


def test_webhook_test_command_passes_through_nginx_and_its_event_is_recorded(stack: Stack) -> None:
    result = subprocess.run(
        [
            *cli_command(),
            "webhook",
            "test",
            stack.webhook_url,
            "--secret",
            stack.secret,
            "--cacert",
            stack.cert,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^signed\b.*\b200\b", result.stdout, re.M), result.stdout
    assert re.search(r"^bad signature\b.*\b401\b", result.stdout, re.M), result.stdout
    assert re.search(r"^stale timestamp\b.*\b401\b", result.stdout, re.M), result.stdout
    # The synthetic event is in the database, once, as a test delivery: the forged and stale copies
    # were not stored, and no job record was made (issue 12).
    stack.receiver.applied()
    selftests = [d for d in stack.deliveries().values() if (d["job_id"] or "").startswith("selftest-")]
    assert len(selftests) == 1, selftests
    delivery = selftests[0]
    assert delivery["state"] == "test" and delivery["idempotency_key"] == f"{delivery['job_id']}-failed"
    assert delivery["remote_addr"] == "127.0.0.1"
    assert delivery["job_id"] in result.stdout
    assert stack.job(delivery["job_id"]) is None

    # The command really discriminates: with a wrong secret the signed case is refused, exit 3.
    wrong = subprocess.run(
        [
            *cli_command(),
            "webhook",
            "test",
            stack.webhook_url,
            "--secret",
            "not-the-secret",
            "--cacert",
            stack.cert,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert "NOT ACCEPTED" in wrong.stdout


# -- 2. signed events over HTTPS are recorded; forged ones are refused and not stored ---------------


def test_signed_events_over_https_are_recorded_and_forged_ones_refused(stack: Stack) -> None:
    body, headers = failed_event(stack.secret, "jobDeployTls1")
    with stack.client() as http:
        response = http.post(stack.webhook_url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"received": True, "outcome": "accepted"}
        # It went through nginx (Server header, HSTS) to the receiver (its request id header).
        assert response.headers["server"] == "nginx"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert response.headers["x-request-id"]
        assert http.post(stack.webhook_url, content=body, headers=headers).json()["outcome"] == "duplicate"

        before = len(stack.deliveries())
        forged_body, forged_headers = failed_event(stack.secret, "jobDeployForged1")
        forged_headers[SIGNATURE_HEADER] = forged_headers[SIGNATURE_HEADER][:-4] + "0000"
        forged = http.post(stack.webhook_url, content=forged_body, headers=forged_headers)
        assert forged.status_code == 401
        assert forged.json()["error"]["reason"] == "mismatch"
        # Valid signature over other bytes (the body changed in transit): refused too.
        tampered = http.post(
            stack.webhook_url,
            content=forged_body.replace(b"provider", b"PROVIDER"),
            headers={**headers, IDEMPOTENCY_HEADER: "jobDeployForged1-failed"},
        )
        assert tampered.status_code == 401
    assert len(stack.deliveries()) == before
    assert stack.job("jobDeployForged1") is None
    assert stack.job("jobDeployTls1")["status"] == "failed"


# -- 3. the body cap: exactly 1 MiB passes, one byte more is stopped (with and without Content-Length) --


def test_body_cap_matches_the_receiver_with_and_without_content_length(stack: Stack) -> None:
    at_cap, at_cap_headers = failed_event(stack.secret, "jobDeployAtCap", size=CAP)
    over, over_headers = failed_event(stack.secret, "jobDeployOverCap", size=CAP + 1)
    assert (len(at_cap), len(over)) == (CAP, CAP + 1)

    def chunked(data: bytes) -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    with stack.client() as http:
        before = len(stack.deliveries())
        response = http.post(stack.webhook_url, content=over, headers=over_headers)
        assert response.status_code == 413
        # nginx's own (HTML) page: the receiver, which answers JSON, never saw the request.
        assert response.headers["content-type"].startswith("text/html")
        response = http.post(stack.webhook_url, content=chunked(over), headers=over_headers)
        assert response.status_code == 413
        assert "content-length" not in response.request.headers
        assert len(stack.deliveries()) == before
        assert stack.job("jobDeployOverCap") is None

        # The proxy's limit is not tighter than the receiver's: a body of exactly the cap is accepted.
        response = http.post(stack.webhook_url, content=chunked(at_cap), headers=at_cap_headers)
        assert response.status_code == 200, response.text
    assert stack.deliveries()["jobDeployAtCap-failed"]["body_bytes"] == CAP


# -- 4. X-Forwarded-For: overwritten by nginx, ignored from untrusted peers ---------------------------


def test_forwarded_for_is_overwritten_by_nginx_and_ignored_from_untrusted_peers(stack: Stack) -> None:
    def deliver(job_id: str, url: str, source: str | None) -> None:
        body, headers = failed_event(stack.secret, job_id)
        with stack.client(local_address=source) as http:
            response = http.post(url, content=body, headers={**headers, "X-Forwarded-For": FORGED_XFF})
        assert response.status_code == 200, response.text

    direct = f"{stack.receiver.url}/webhooks/openrouter"
    deliver("jobXffNginxLocal", stack.webhook_url, None)
    deliver("jobXffNginxOther", stack.webhook_url, UNTRUSTED_SOURCE)
    deliver("jobXffDirectUntrusted", direct, UNTRUSTED_SOURCE)
    deliver("jobXffDirectTrusted", direct, "127.0.0.1")
    seen = {key.removesuffix("-failed"): d["remote_addr"] for key, d in stack.deliveries().items()}
    # nginx connects from 127.0.0.1 (trusted) and replaced the forged header with the peer it saw.
    assert seen["jobXffNginxLocal"] == "127.0.0.1"
    assert seen["jobXffNginxOther"] == UNTRUSTED_SOURCE
    # Straight to the receiver from an address that is not a trusted proxy: the header is ignored.
    assert seen["jobXffDirectUntrusted"] == UNTRUSTED_SOURCE
    # Control: the receiver does honour the header from its trusted proxy (so the above is not vacuous).
    assert seen["jobXffDirectTrusted"] == FORGED_XFF


# -- 5. plain HTTP: redirect to HTTPS (nothing proxied), ACME challenges served ------------------------


def test_plain_http_redirects_to_https_and_serves_acme_challenges(stack: Stack) -> None:
    http_url = f"http://127.0.0.1:{stack.http_port}"
    body, headers = failed_event(stack.secret, "jobDeployPlainHttp")
    with httpx.Client(timeout=10, follow_redirects=False) as http:
        response = http.get(f"{http_url}/jobs?limit=1")
        assert response.status_code == 301
        assert response.headers["location"] == "https://127.0.0.1/jobs?limit=1"
        response = http.post(f"{http_url}/webhooks/openrouter", content=body, headers=headers)
        assert response.status_code == 301
        assert response.headers["location"] == "https://127.0.0.1/webhooks/openrouter"
        token = stack.acme_root / ".well-known" / "acme-challenge" / "tok3n"
        token.write_text("tok3n.key-authorization")
        response = http.get(f"{http_url}/.well-known/acme-challenge/tok3n")
        assert response.status_code == 200
        assert response.text == "tok3n.key-authorization"
    assert stack.job("jobDeployPlainHttp") is None


def test_query_api_and_metrics_through_nginx(stack: Stack) -> None:
    body, headers = failed_event(stack.secret, "jobDeployQuery1")
    with stack.client() as http:
        assert http.post(stack.webhook_url, content=body, headers=headers).status_code == 200
        health = http.get(f"{stack.https_url}/healthz")
        assert health.json() == {"status": "ok"}
        # nginx's $request_id reached the receiver, which echoes it: one id in both logs.
        assert re.fullmatch(r"[0-9a-f]{32}", health.headers["x-request-id"])
        assert http.get(f"{stack.https_url}/jobs").status_code == 401  # the receiver's token guard
        job = http.get(f"{stack.https_url}/jobs/jobDeployQuery1", headers=AUTH)
        assert job.status_code == 200 and job.json()["status"] == "failed"
        metrics = http.get(f"{stack.https_url}/metrics", headers=AUTH)
        assert metrics.status_code == 200 and "receiver_deliveries_total" in metrics.text
    with stack.client(local_address=UNTRUSTED_SOURCE) as http:  # not an allowed (internal) address
        refused = http.get(f"{stack.https_url}/metrics", headers=AUTH)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")  # nginx
        assert http.get(f"{stack.https_url}/healthz").status_code == 200


# -- 6. the systemd unit ---------------------------------------------------------------------------


def unit_lines(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a unit file, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", text)
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def test_systemd_unit_verifies_and_is_hardened(tmp_path) -> None:
    pairs = unit_lines(UNIT.read_text())
    unit = dict(pairs)
    exec_start = shlex.split(unit["ExecStart"])
    assert exec_start[0] == "/opt/openrouter-video/.venv/bin/openrouter-video"
    assert exec_start[1:6] == ["serve", "--host", "127.0.0.1", "--port", "8000"]
    graceful = int(exec_start[exec_start.index("--graceful-timeout") + 1])
    assert int(unit["TimeoutStopSec"].removesuffix("s")) > graceful
    for key, value in {
        "EnvironmentFile": "/etc/openrouter-video/env",
        "StateDirectory": "openrouter-video",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }.items():
        assert unit.get(key) == value, f"{key}={unit.get(key)!r}, expected {value!r}"
    assert ("SystemCallFilter", "@system-service") in pairs
    assert unit.get("User") or unit.get("DynamicUser") == "yes"

    # Every option of ExecStart is one `serve` accepts (click parses them all before --help exits 0).
    args = [a.replace("${STATE_DIRECTORY}", str(tmp_path)) for a in exec_start[1:]]
    check = subprocess.run(
        [*cli_command(), *args, "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr

    analyze = find_tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the static checks above ran, `verify` did not")
    # A copy whose ExecStart names a binary that exists here, so verify checks everything else too.
    binary = cli_command()[0] if len(cli_command()) == 1 else shutil.which("true")
    copy = tmp_path / "openrouter-video.service"
    copy.write_text(UNIT.read_text().replace("/opt/openrouter-video/.venv/bin/openrouter-video", binary))
    verify = subprocess.run(
        [analyze, "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    # Only the site-specific env file (made during installation) may be reported missing.
    complaints = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "/etc/openrouter-video/env" not in line
    ]
    assert verify.returncode == 0 and not complaints, verify.stdout + verify.stderr

    security = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    if security.returncode != 0 and level is None:
        pytest.skip(f"`systemd-analyze security --offline` unsupported here: {security.stderr.strip()[:200]}")
    assert level is not None and float(level.group(1)) <= 2.0, security.stdout[-3000:]


# -- 7. Caddy ---------------------------------------------------------------------------------------


def caddy_tokens(text: str) -> list[str]:
    """The Caddyfile's tokens, comments dropped (a `#` starts a comment at a token boundary)."""
    tokens: list[str] = []
    for line in text.splitlines():
        for token in shlex.split(line, comments=True, posix=True):
            tokens.append(token)
        tokens.append("\n")
    return tokens


def resolve_env_placeholder(token: str) -> str:
    match = re.fullmatch(r"\{\$([A-Z_]+)(?::(.*))?\}", token)
    return (match.group(2) or "") if match else token


def parse_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)\s*([KMG]i?B)", text).groups()
    return (
        int(number) * {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]
    )


def test_caddyfile_proxies_to_the_receiver_with_the_body_cap() -> None:
    tokens = caddy_tokens(CADDYFILE.read_text())
    words = [t for t in tokens if t != "\n"]
    site = resolve_env_placeholder(words[0])
    assert site == "hooks.example.com" and words[1] == "{"  # the first (and only) site block
    upstream = resolve_env_placeholder(words[words.index("reverse_proxy") + 1])
    assert upstream == "127.0.0.1:8000"
    body = words.index("request_body")
    assert words[body + 1] == "{" and words[body + 2] == "max_size"
    assert parse_size(words[body + 3]) == CAP
    assert "trusted_proxies" not in words  # so Caddy overwrites any client-sent X-Forwarded-For
    metrics = words.index("@external_metrics")
    assert words[metrics : metrics + 6] == ["@external_metrics", "{", "path", "/metrics", "not", "remote_ip"]

    caddy = find_tool("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed: the Caddyfile was checked by parsing only")
    adapted = subprocess.run(
        [caddy, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert adapted.returncode == 0, adapted.stderr
    config = json.loads(adapted.stdout)
    handlers = json.dumps(config)
    assert '"dial": "127.0.0.1:8000"' in handlers
    assert f'"max_size": {CAP}' in handlers
    assert '"host": ["hooks.example.com"]' in handlers


def caddy_version() -> tuple[int, int]:
    out = subprocess.run([find_tool("caddy"), "version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"v?(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@pytest.fixture(scope="module")
def caddy_stack(stack: Stack) -> Iterator[tuple[str, int, str]]:
    caddy = find_tool("caddy")
    if caddy is None:
        pytest.skip(
            "caddy is not installed (optional; apt-get install caddy): the live Caddy test did not run"
        )
    tmp = stack.tmp / "caddy"
    tmp.mkdir()
    https_port, http_port = free_port(), free_port()
    # Test-only global options: ports, loopback binding, a private storage with Caddy's own local CA.
    options = (
        f"\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tdefault_bind 127.0.0.1\n"
        f"\tlocal_certs\n\tskip_install_trust\n\tstorage file_system {tmp}/storage\n"
    )
    shipped = CADDYFILE.read_text()
    config = tmp / "Caddyfile"
    config.write_text("{\n" + options + "}\n\n" + shipped)
    env = clean_env(
        SITE_ADDRESS="127.0.0.1",
        UPSTREAM=f"127.0.0.1:{stack.receiver.port}",
        HOME=str(tmp),
        XDG_DATA_HOME=str(tmp / "data"),
        XDG_CONFIG_HOME=str(tmp / "config"),
    )
    log = tmp / "caddy.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        root = tmp / "storage" / "pki" / "authorities" / "local" / "root.crt"

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"caddy exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            if not root.exists():
                return False
            with contextlib.suppress(OSError, ssl.SSLError):
                context = ssl.create_default_context(cafile=str(root))
                with (
                    socket.create_connection(("127.0.0.1", https_port), timeout=1) as sock,
                    context.wrap_socket(sock, server_hostname="127.0.0.1"),
                ):
                    return True
            return False

        wait_until(serving, timeout=20, interval=0.1, what="caddy to serve TLS")
        yield str(root), https_port, f"http://127.0.0.1:{http_port}"
    finally:
        stop_process(process)


def refusal_status(http: httpx.Client, url: str, content: Any, headers: dict[str, str]) -> int:
    """The status of a refused upload. Only the status: a proxy that refuses a body before reading it
    all may close the connection right after its headers, before the body it announced (Caddy does,
    under load), so reading the body could fail where the refusal itself was right."""
    with http.stream("POST", url, content=content, headers=headers) as response:
        return response.status_code


def test_caddy_in_front_of_the_receiver(stack: Stack, caddy_stack: tuple[str, int, str]) -> None:
    root, https_port, http_url = caddy_stack
    url = f"https://127.0.0.1:{https_port}/webhooks/openrouter"

    def client(source: str | None = None) -> httpx.Client:
        context = ssl.create_default_context(cafile=root)
        return httpx.Client(transport=httpx.HTTPTransport(verify=context, local_address=source), timeout=15)

    body, headers = failed_event(stack.secret, "jobCaddy1")
    before = len(stack.deliveries())
    with client(UNTRUSTED_SOURCE) as http:
        response = http.post(url, content=body, headers={**headers, "X-Forwarded-For": FORGED_XFF})
        assert response.status_code == 200, response.text
        forged = dict(headers)
        forged[SIGNATURE_HEADER] = sign("not-the-secret", body)
        assert (
            http.post(url, content=body, headers={**forged, IDEMPOTENCY_HEADER: "jobCaddyForged"}).status_code
            == 401
        )
        assert http.get(f"https://127.0.0.1:{https_port}/metrics", headers=AUTH).status_code == 403

        # Caddy before 2.7 answers 502 when request_body's max_size cuts a proxied body (caddy#5652,
        # fixed in 2.7: 413); either way the body never reaches the receiver's database.
        refused = {413} if caddy_version() >= (2, 7) else {413, 502}
        over, over_headers = failed_event(stack.secret, "jobCaddyBig", size=CAP + 1)
        assert refusal_status(http, url, over, over_headers) in refused
        chunks = (over[i : i + 65536] for i in range(0, len(over), 65536))
        assert refusal_status(http, url, chunks, over_headers) in refused
        at_cap, at_cap_headers = failed_event(stack.secret, "jobCaddyAtCap", size=CAP)
        assert http.post(url, content=at_cap, headers=at_cap_headers).status_code == 200
    delivery = stack.deliveries()["jobCaddy1-failed"]
    assert delivery["remote_addr"] == UNTRUSTED_SOURCE  # Caddy replaced the forged X-Forwarded-For
    assert len(stack.deliveries()) == before + 2  # jobCaddy1 and jobCaddyAtCap
    assert stack.job("jobCaddyBig") is None

    with client() as http:
        assert http.get(f"https://127.0.0.1:{https_port}/metrics", headers=AUTH).status_code == 200
    redirect = httpx.get(f"{http_url}/webhooks/openrouter", timeout=10)
    assert redirect.status_code in (301, 308)
    assert redirect.headers["location"].startswith("https://127.0.0.1")


# -- container files and env.example (static: no Docker engine runs the tests) -----------------------


def test_env_example_documents_every_variable() -> None:
    names = set()
    for path in [*ROOT.glob("receiver/**/*.py"), *ROOT.glob("client/**/*.py")]:
        names |= set(re.findall(r"\b((?:OPENROUTER|RECEIVER)_[A-Z_]+)\b", path.read_text()))
    # Module constants in client/_cli/receiver_link.py, not variables.
    names -= {"RECEIVER_WEBHOOK_PATH", "RECEIVER_TIMEOUT"}
    documented = set(re.findall(r"^#?\s*((?:OPENROUTER|RECEIVER)_[A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M))
    assert names - documented == set(), f"missing from deploy/env.example: {sorted(names - documented)}"
    assert documented - names == set(), (
        f"deploy/env.example names unknown variables: {sorted(documented - names)}"
    )


def test_container_files_are_consistent() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    joined = re.sub(r"\\\n\s*", " ", dockerfile)  # continuation lines joined
    assert re.search(r"^HEALTHCHECK .*CMD \[\"python\".*/healthz", joined, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM", dockerfile, re.M)
    assert re.search(r'^VOLUME \["?/data"?\]', dockerfile, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert cmd[:2] == ["openrouter-video", "serve"] and cmd[cmd.index("--data-dir") + 1] == "/data"
    check = subprocess.run(
        [*cli_command(), *cmd[1:], "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr

    compose = COMPOSE.read_text()
    caddy_ip = re.search(r"ipv4_address:\s*([0-9.]+)", compose.split("\n  caddy:", 1)[1]).group(1)
    trusted = re.search(r"RECEIVER_TRUSTED_PROXIES:\s*\"?([0-9.,]+)", compose).group(1)
    assert trusted.split(",") == [caddy_ip], "the receiver must trust exactly the Caddy container"
    for mount in re.findall(r"-\s*(\.\.?/[^:\s]+):", compose):
        assert (COMPOSE.parent / mount).exists(), f"compose.yaml mounts {mount}, which does not exist"
    assert "env_file" in compose and "/data" in compose
