"""`--profile DIR`: sample the receiver with py-spy during benchmarks 1, 2 (the load) and 8 (the first upload).

py-spy (installed into the venv on first use) records raw collapsed stacks of the server process
into DIR/<name>.txt (feed them to any flame graph tool); a summary of where the samples fall,
by leaf line and by function including callees, is printed to stderr.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys

from ._common import PYTHON, REPO, Context, pip_install

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def py_spy(ctx: Context) -> str | None:
    candidates = [os.path.join(os.path.dirname(PYTHON), "py-spy"), shutil.which("py-spy")]
    found = next((c for c in candidates if c and os.path.exists(c)), None)
    if found is None:
        pip_install(ctx, "py-spy")
        found = candidates[0] if os.path.exists(candidates[0]) else None
    return found


class Profiler:
    """py-spy record on `pid` for `seconds`, started now; `finish()` waits and summarises."""

    def __init__(self, ctx: Context, pid: int, name: str, seconds: float) -> None:
        self.ctx = ctx
        self.path = os.path.join(ctx.profile_dir or ".", f"{name}.txt")
        self.process: subprocess.Popen[bytes] | None = None
        binary = py_spy(ctx)
        if binary is None:
            ctx.log("py-spy unavailable: no profile")
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        argv = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--threads",
            "-o",
            self.path,
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self) -> None:
        if self.process is None:
            return
        _, err = self.process.communicate(timeout=120)
        if not os.path.exists(self.path):
            self.ctx.log(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
            return
        self.ctx.log(f"profile: {self.path}\n{summarise(self.path)}")


def _short(frame: str, with_line: bool) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"].split("site-packages/")[-1].replace(REPO + os.sep, "")
    line = f":{match['line']}" if with_line and match["line"] else ""
    return f"{match['fn']} ({path}{line})"


def summarise(path: str, top: int = 15) -> str:
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as fh:
        for raw in fh:
            stack, _, count = raw.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            if frames and frames[0].startswith("thread ("):
                threads[frames[0]] += n
                frames = frames[1:]
            if not frames:
                continue
            leaf[_short(frames[-1], True)] += n
            for name in {_short(f, False) for f in frames}:
                inclusive[name] += n
    if not total:
        return "  (no samples)"
    ours = [(k, v) for k, v in inclusive.most_common() if "receiver/" in k or "client/" in k]
    lines = [
        f"  {total} samples (non-idle threads); by thread: "
        + ", ".join(f"{k} {v / total:.0%}" for k, v in threads.most_common(4)),
        "  leaf lines (self time):",
    ]
    lines += [f"    {v / total:6.1%}  {k}" for k, v in leaf.most_common(top)]
    lines.append("  project functions (including callees):")
    lines += [f"    {v / total:6.1%}  {k}" for k, v in ours[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(sys.argv[1]))
