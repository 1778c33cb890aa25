"""Run the benchmarks and print one table: `python -m tests.bench [--only 1,3] [--quick]`.

    --only 1,3   run only these benchmarks (numbers as in tests/bench/__init__.py)
    --quick      smaller sizes for a smoke run: 5 s loads, 100k records (5, 9), 200 MB download, 30 jobs,
                 200 MiB into S3
    --strict     exit 1 if any figure misses its target (default: exit 1 only if a benchmark errors)
    --profile D  sample the receiver with py-spy during benchmarks 1, 2 and 8; raw stacks go to D/
    --python-load  use the Python load generator instead of wrk for 1 and 2 (the fallback when wrk
                 cannot be installed; on 2 cores it is itself the bottleneck, so its figures are a floor)

Progress goes to stderr; the table and the commands used go to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable

from ._common import Context, CpuMeter, Row, cpu_load, cpu_probe, ensure_wrk, new_root


def _wrk(ctx: Context) -> str | None:
    return None if ctx.python_load else ensure_wrk(ctx)


def _intake(ctx: Context) -> None:
    from .intake import bench_intake

    bench_intake(ctx, _wrk(ctx))


def _flood(ctx: Context) -> None:
    from .intake import bench_flood

    bench_flood(ctx, _wrk(ctx))


def _verify(ctx: Context) -> None:
    from .verify import bench_verify

    bench_verify(ctx)


def _download(ctx: Context) -> None:
    from .download import bench_download

    bench_download(ctx)


def _query(ctx: Context) -> None:
    from .query import bench_query

    bench_query(ctx)


def _dashboard(ctx: Context) -> None:
    from .dashboard import bench_dashboard

    bench_dashboard(ctx)


def _e2e(ctx: Context) -> None:
    from .e2e import bench_e2e

    bench_e2e(ctx)


def _postgres(ctx: Context) -> None:
    from .scaleout import bench_postgres

    bench_postgres(ctx, _wrk(ctx))


def _s3(ctx: Context) -> None:
    from .scaleout import bench_s3

    bench_s3(ctx)


def _waiting(ctx: Context) -> None:
    from .waiting import bench_waiting

    bench_waiting(ctx)


BENCHMARKS: dict[str, tuple[str, Callable[[Context], None]]] = {
    "1": ("durable webhook intake vs bare endpoint", _intake),
    "2": ("forged flood + genuine deliveries", _flood),
    "3": ("signature verification per call", _verify),
    "4": ("download vs curl, peak memory", _download),
    "5": ("query API on 1M records", _query),
    "6": ("end to end on the simulator", _e2e),
    "7": ("PostgreSQL: durable acks/s, 1 and 2 replicas, vs pgbench", _postgres),
    "8": ("S3: a video stored through the receiver vs aws s3 cp, peak memory", _s3),
    "9": ("dashboard jobs page on 1M records", _dashboard),
    "10": ("long-poll wake after a webhook, 500 open waits", _waiting),
}


def render_table(rows: list[Row]) -> str:
    header = ("#", "benchmark", "figure", "target", "figure/target", "result")
    body = [
        (
            r.bench,
            r.name,
            r.figure_text(),
            r.target_text(),
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.result,
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells) for cells in body]
    notes = [f"- {r.bench} {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(out + ([""] + notes if notes else []))


def render_noise(ctx: Context) -> str:
    shares = ", ".join(f"{n}: {share:.0%}" for n, share in ctx.foreign_cpu.items())
    line = (
        f"User CPU of other processes during each benchmark (share of all {os.cpu_count()} CPUs): {shares}."
    )
    if any(share > 0.10 for share in ctx.foreign_cpu.values()):
        line += " Above ~10% the figures are depressed and noisy: rerun on an idle machine to compare."
    probes = ", ".join(f"{n}: {before:.0f} -> {after:.0f}" for n, (before, after) in ctx.cpu_probe_ms.items())
    line += (
        f"\nCPU speed probe, ms for 10**6 Python additions before -> after each benchmark (lower is faster; "
        f"CPU-bound figures scale with it): {probes}."
    )
    return line


def render_commands(ctx: Context, only: list[str], quick: bool) -> str:
    flags = (["--only", ",".join(only)] if len(only) < len(BENCHMARKS) else []) + (
        ["--quick"] if quick else []
    )
    lines = [
        "## Benchmarks",
        "",
        "```sh",
        "make bench                                   # all ten (several minutes); prints one table",
        "make bench BENCH_ARGS='--only 1,3 --quick'   # a subset, smaller sizes (smoke run)",
        " ".join([".venv/bin/python -m tests.bench", *flags]) + "   # what produced this table",
        "# also: --strict (exit 1 on a miss), --profile DIR (py-spy the receiver in 1, 2 and 8), --python-load",
        "```",
        "",
        "What each one runs (ports and scratch directories are chosen at run time):",
        "",
    ]
    for number, commands in ctx.commands.items():
        lines.append(f"{number}. {BENCHMARKS[number][0]}:")
        lines += [f"   - `{c}`" for c in commands]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the receiver during 1, 2 and 8, stacks into DIR"
    )
    parser.add_argument("--python-load", action="store_true", help="Python load generator instead of wrk")
    args = parser.parse_args(argv)
    only = [part.strip() for part in args.only.split(",") if part.strip()] or list(BENCHMARKS)
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    ctx = Context(
        quick=args.quick,
        root=new_root(),
        profile_dir=os.path.abspath(args.profile) if args.profile else None,
        python_load=args.python_load,
    )
    started = time.monotonic()
    load_before = cpu_load()
    errors = 0
    try:
        for number in only:
            title, run = BENCHMARKS[number]
            ctx.current = number
            ctx.log(f"== {number}. {title} ({'quick' if args.quick else 'full'}) -- {cpu_load()}")
            probe_before = cpu_probe()
            t0 = time.monotonic()
            meter = CpuMeter()
            try:
                run(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                errors += 1
                traceback.print_exc()
                ctx.add(Row(number, f"{title}: ERROR", None, "", note=f"{type(exc).__name__}: {exc}"[:300]))
            ctx.foreign_cpu[number] = meter.foreign_share()
            took = time.monotonic() - t0
            ctx.cpu_probe_ms[number] = (probe_before, cpu_probe())
            ctx.log(
                f"== {number} took {took:.0f} s; other processes used {ctx.foreign_cpu[number]:.0%} of the "
                f"machine's CPU (user time) meanwhile; CPU probe {probe_before:.0f} ms before, "
                f"{ctx.cpu_probe_ms[number][1]:.0f} ms after"
            )
    finally:
        shutil.rmtree(ctx.root, ignore_errors=True)

    print()
    print(
        f"Benchmarks ({'quick' if args.quick else 'full'}), {time.monotonic() - started:.0f} s, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; before: {load_before}; after: {cpu_load()}"
    )
    print()
    print(render_table(ctx.rows))
    print()
    print(render_noise(ctx))
    print()
    print(render_commands(ctx, only, args.quick))
    misses = sum(r.result == "MISS" for r in ctx.rows)
    if errors:
        return 1
    return 1 if args.strict and misses else 0


if __name__ == "__main__":
    sys.exit(main())
