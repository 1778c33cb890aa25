"""`openrouter-video tokens create|list|revoke` (and `usage --data-dir`) on the server's shell, and
the dashboard's sign-in with a named token: an admin's works until it is revoked, an app's is refused."""

from __future__ import annotations

import re

import httpx
from backends import Backend
from click.testing import CliRunner
from dashboard_support import http_session
from receiver_support import public_receiver, receiver_settings, wait_until
from token_support import create_token, submit, tokens_cli

from openrouter_video._cli import cli


def test_create_list_revoke_and_their_errors(tmp_path) -> None:
    sqlite, data_dir = Backend("sqlite"), str(tmp_path / "data")
    made = tokens_cli(sqlite, data_dir, "create", "web-backend", "--role", "submit", "--budget-day", "20")
    assert made.exit_code == 0, made.output
    assert re.search(r"^notify secret: whsec_[A-Za-z0-9+/]{32}$", made.output, re.MULTILINE), made.output
    token = re.search(r"^token:\s+(orv_\S+)$", made.output, re.MULTILINE)
    assert token is not None
    create_token(sqlite, data_dir, "ops", "admin", "--budget-month", "500")

    for args, code, words in (
        (("create", "web-backend", "--role", "read"), 1, "a token named 'web-backend' exists already"),
        (("create", "Web Backend", "--role", "read"), 2, "is not allowed"),
        (("create", "admin", "--role", "read"), 2, "reserved for RECEIVER_API_TOKEN"),
        (("create", "x", "--role", "boss"), 2, "'boss' is not one of"),
        (("create", "x", "--role", "read", "--budget-day", "-1"), 2, "--budget-day"),
        (("revoke", "nobody"), 1, "no token named 'nobody'"),
    ):
        result = tokens_cli(sqlite, data_dir, *args)
        assert result.exit_code == code and words in result.output, (args, result.output)
        assert "Traceback" not in result.output

    listing = tokens_cli(sqlite, data_dir, "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ROLE",
        "DAY",
        "CAP",
        "MONTH",
        "CAP",
        "CREATED",
        "LAST",
        "USED",
        "REVOKED",
    ]
    assert lines[1].split()[:4] == ["ops", "admin", "-", "$500.00"]
    assert lines[2].split()[:4] == ["web-backend", "submit", "$20.00", "-"]
    assert lines[2].endswith("-")  # not revoked
    assert token.group(1) not in listing.output and "whsec_" not in listing.output
    assert not re.search(r"[0-9a-f]{64}", listing.output)  # never a hash

    assert "web-backend revoked" in tokens_cli(sqlite, data_dir, "revoke", "web-backend").output
    again = tokens_cli(sqlite, data_dir, "revoke", "web-backend")
    assert again.exit_code == 0 and "revoked already" in again.output
    assert tokens_cli(sqlite, data_dir, "list").output.splitlines()[2].endswith("Z")  # when revoked

    for command in ("create", "list", "revoke"):
        help_text = CliRunner().invoke(cli, ["tokens", command, "--help"]).output
        assert "Example:" in help_text and f"openrouter-video tokens {command}" in help_text


def test_usage_reads_the_store_on_the_server(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with public_receiver(settings) as rx:
        app = create_token(Backend("sqlite"), settings.data_dir, "app", "submit")
        assert submit(rx.url, app, "u-1").status_code == 201
    env = {"RECEIVER_URL": None, "RECEIVER_DATA_DIR": None}
    table = CliRunner().invoke(
        cli, ["usage", "--data-dir", settings.data_dir], env=env, catch_exceptions=False
    )
    assert table.exit_code == 0, table.output
    assert re.search(r"google/veo-3.1\s+app\s+1\s", table.output), table.output


def test_dashboard_sign_in_with_a_named_token(tmp_path, simulator) -> None:
    settings = receiver_settings(str(tmp_path / "data"), simulator)
    with public_receiver(settings) as rx:
        sqlite = Backend("sqlite")
        ops = create_token(sqlite, settings.data_dir, "ops", "admin")
        app = create_token(sqlite, settings.data_dir, "app", "submit")

        with httpx.Client(base_url=rx.url, follow_redirects=False, timeout=10) as client:
            nonce = re.search(r'name="nonce" value="(\w+)"', client.get("/ui/signin").text)
            assert nonce is not None
            refused = client.post("/ui/signin", data={"nonce": nonce.group(1), "token": app, "next": "/ui/"})
            assert refused.status_code == 403  # the sign-in form again, saying why
            assert "role submit" in refused.text and "operator tool" in refused.text
            assert "orv_session" not in refused.headers.get("set-cookie", "")

        with http_session(rx.url, ops) as client:
            assert client.get("/ui/").status_code == 200
            assert tokens_cli(sqlite, settings.data_dir, "revoke", "ops").exit_code == 0
            # Its session ends once the receiver's short token cache notices (auth.REVOCATION_DELAY).
            wait_until(lambda: client.get("/ui/").status_code == 303, timeout=15, what="the session to end")
            assert client.get("/ui/").headers["location"].startswith("/ui/signin")
            assert client.get("/ui/events").status_code == 401
            assert client.get("/ui/signin").status_code == 200  # the form, not a redirect loop
