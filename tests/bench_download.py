"""Download benchmark: throughput and peak memory of the client on a large simulated video.

    python -m tests.bench_download              # 2 GiB
    python -m tests.bench_download --size 200M  # sizes: plain bytes or with K/M/G (binary units)

The simulator runs in a subprocess (`openrouter-video simulate`), so this process's memory is the
client's alone. Peak RSS is read from /proc/self/status (VmHWM) where available, else from
`resource.getrusage` (ru_maxrss). The same file is then fetched with curl, if installed, for
comparison. Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from client import OpenRouterVideo

API_KEY = "sk-or-bench"
MODEL = "google/veo-3.1"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200M, 2G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def peak_rss() -> int:
    """This process's peak resident set size in bytes."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def process_peak_rss(pid: int) -> int | None:
    """Another process's peak RSS (VmHWM) in bytes, or None when /proc can't tell.

    `getrusage(RUSAGE_CHILDREN)` is no use here: on Linux a child's ru_maxrss includes the memory
    it inherited from this process before exec, so it would report our size, not curl's.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_sampling_rss(command: list[str]) -> tuple[int, int | None]:
    """Run `command`, sampling its peak RSS while it runs; return (exit code, peak RSS bytes)."""
    process = subprocess.Popen(command)
    peak: int | None = None
    while process.poll() is None:
        sample = process_peak_rss(process.pid)
        if sample is not None:
            peak = max(peak or 0, sample)
        time.sleep(0.01)
    return process.returncode, peak


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "from client._cli import main; main()",
        "simulate",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--pending",
        "0",
        "--in-progress",
        "0",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"simulator exited with {process.returncode}")
        try:
            httpx.get(
                f"http://127.0.0.1:{port}/api/v1/videos/models",
                timeout=1,
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("simulator did not start within 20 s")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench_download", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"), help="output size (default 2G)")
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
    parser.add_argument("--no-curl", action="store_true", help="skip the curl comparison")
    parser.add_argument("--verify", action="store_true", help="also hash curl's file and compare (slow)")
    args = parser.parse_args(argv)

    port = free_port()
    simulator = start_simulator(port)
    base_url = f"http://127.0.0.1:{port}/api/v1"
    workdir = tempfile.mkdtemp(prefix="bench-download-", dir=args.dir)
    try:
        with OpenRouterVideo(api_key=API_KEY, base_url=base_url) as client:
            job = client.wait(
                client.submit(f"benchmark [sim:bytes={args.size}]", model=MODEL, duration=4),
                first_interval=0.05,
            )
            dest = os.path.join(workdir, "client.mp4")
            rss_before = peak_rss()
            started = time.perf_counter()
            result = client.download(job, dest=dest)
            seconds = time.perf_counter() - started
            rss_after = peak_rss()
        print(f"size          {result.bytes:,} bytes ({mb(result.bytes)})")
        print(
            f"client        {seconds:6.2f} s   {result.bytes / seconds / 1e6:8.1f} MB/s   "
            f"peak RSS {mb(rss_before)} before, {mb(rss_after)} after (+{mb(rss_after - rss_before)})"
        )
        print(f"              sha256 {result.sha256}")
        os.unlink(dest)

        curl = shutil.which("curl")
        if curl and not args.no_curl:
            target = os.path.join(workdir, "curl.mp4")
            url = f"{base_url}/videos/{job.id}/content?index=0"
            started = time.perf_counter()
            code, curl_rss = run_sampling_rss(
                [curl, "-sS", "--fail", "-o", target, "-H", f"Authorization: Bearer {API_KEY}", url]
            )
            seconds = time.perf_counter() - started
            if code != 0:
                print(f"curl          failed with exit code {code}")
            else:
                size = os.path.getsize(target)
                print(
                    f"curl          {seconds:6.2f} s   {size / seconds / 1e6:8.1f} MB/s   "
                    f"peak RSS {mb(curl_rss) if curl_rss is not None else 'n/a'}"
                )
                if args.verify:
                    same = sha256_file(target) == result.sha256
                    print(f"              sha256 {'matches' if same else 'DIFFERS from'} the client's")
        elif not args.no_curl:
            print("curl          not installed; skipped")
    finally:
        simulator.terminate()
        try:
            simulator.wait(10)
        except subprocess.TimeoutExpired:
            simulator.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
