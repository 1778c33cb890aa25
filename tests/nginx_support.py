"""Real nginx running the shipped site config (deploy/nginx/openrouter-video.conf), for the tests.

Shared by tests/test_deploy.py (one receiver behind it) and tests/test_replicas.py (three replicas
as the round-robin `upstream`). The config is rendered from the shipped file by substituting only
ports, certificate paths, the upstream servers and the ACME webroot; each substitution is counted,
so a changed file fails loudly instead of being silently skipped.

nginx and openssl are required in CI (.ci/run installs them); elsewhere the tests that need them
skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from receiver_support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX_SITE = DEPLOY / "nginx" / "openrouter-video.conf"
IN_CI = bool(os.environ.get("CI"))


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def require_tool(name: str) -> str:
    """nginx/openssl: CI must have them (.ci/run installs them), so there a missing one fails."""
    path = find_tool(name)
    if path is None:
        message = (
            f"`{name}` is not installed: the deployment tests run the shipped config in real {name} "
            f"(apt-get install nginx-light openssl; .ci/run does this)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def substitute(text: str, replacements: list[tuple[str, str, int]], source: Path) -> str:
    for old, new, count in replacements:
        found = text.count(old)
        assert found == count, (
            f"{source.relative_to(ROOT)}: expected {count} x {old!r}, found {found}; "
            f"update tests/nginx_support.py's rendering together with the file"
        )
        text = text.replace(old, new)
    return text


def wait_port(port: int, process: subprocess.Popen, log: Path, what: str, host: str = "127.0.0.1") -> None:
    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        return False

    wait_until(up, timeout=15, interval=0.05, what=f"{what} on port {port}")


def stop_process(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key) paths."""
    openssl = require_tool("openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def render_nginx_site(
    *,
    https_port: int,
    http_port: int,
    upstream_ports: Sequence[int],
    cert: str,
    key: str,
    acme_root: Path,
) -> str:
    """The shipped site with test ports and paths; one upstream `server` line per port, in order."""
    servers = "\n    ".join(f"server 127.0.0.1:{port};" for port in upstream_ports)
    return substitute(
        NGINX_SITE.read_text(),
        [
            ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;", 1),
            ("listen [::]:443 ssl;", "# (IPv6 listen dropped by the test)", 1),
            ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
            ("listen [::]:80;", "# (IPv6 listen dropped by the test)", 1),
            ("/etc/letsencrypt/live/hooks.example.com/fullchain.pem", cert, 1),
            ("/etc/letsencrypt/live/hooks.example.com/privkey.pem", key, 1),
            ("server 127.0.0.1:8000;", servers, 1),
            ("root /var/www/letsencrypt;", f"root {acme_root};", 1),
        ],
        NGINX_SITE,
    )


def nginx_main_conf(prefix: Path, site: Path, *, worker_connections: int = 256) -> str:
    # Only the process-wide parts a distribution's nginx.conf provides; the site file is included as is.
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the 0700 pytest temp dirs
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n"
        f"events {{ worker_connections {worker_connections}; }}\n"
        f"http {{\n    access_log {prefix}/access.log;\n    default_type application/octet-stream;\n"
        f"{temp}\n    include {site};\n}}\n"
    )


@dataclass
class Nginx:
    """nginx running the rendered site: its ports, certificate and files."""

    process: subprocess.Popen
    https_port: int
    http_port: int
    cert: str
    acme_root: Path
    prefix: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.https_url}/webhooks/openrouter"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def client(self, local_address: str | None = None, **options: object) -> httpx.Client:
        transport = httpx.HTTPTransport(
            verify=ssl.create_default_context(cafile=self.cert), local_address=local_address
        )
        options.setdefault("timeout", 15)
        return httpx.Client(transport=transport, follow_redirects=False, **options)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_nginx(
    tmp: Path, upstream_ports: Sequence[int], *, worker_connections: int = 256
) -> Iterator[Nginx]:
    """nginx with the shipped site in front of `upstream_ports`, a fresh self-signed certificate, ACME
    webroot and logs under `tmp`; checked with `nginx -t` first, stopped afterwards."""
    nginx = require_tool("nginx")
    cert, key = make_certificate(tmp)
    prefix = tmp / "nginx"
    acme_root = tmp / "acme"
    (acme_root / ".well-known" / "acme-challenge").mkdir(parents=True)
    prefix.mkdir()
    https_port, http_port = free_port(), free_port()
    site = prefix / "openrouter-video.conf"
    site.write_text(
        render_nginx_site(
            https_port=https_port,
            http_port=http_port,
            upstream_ports=upstream_ports,
            cert=cert,
            key=key,
            acme_root=acme_root,
        )
    )
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_main_conf(prefix, site, worker_connections=worker_connections))
    base = [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t refused the rendered config:\n{check.stderr}"
    process = None
    try:
        with open(prefix / "nginx.out", "wb") as out:
            process = subprocess.Popen([*base, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
        wait_port(https_port, process, prefix / "error.log", "nginx")
        wait_port(http_port, process, prefix / "error.log", "nginx")
        yield Nginx(process, https_port, http_port, cert, acme_root, prefix)
    finally:
        stop_process(process)
