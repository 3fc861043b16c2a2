"""``python -m benchmarks [NAME ...] [--quick] [--loop uvloop] [--json PATH]``: run, print, save."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    capacity,
    export_throughput,
    http_loopback,
    integration_cost,
    middleware_cost,
    patterns,
    sampling,
    seed_vs_batched,
    service_chain,
    span_cost,
)
from benchmarks.loops import LOOPS, loop_name, use_loop
from benchmarks.options import Options
from benchmarks.report import ScenarioResult, machine_info, render, write_json

SCENARIOS: dict[str, Callable[[Options], ScenarioResult]] = {
    span_cost.NAME: span_cost.run,
    middleware_cost.NAME: middleware_cost.run,
    http_loopback.NAME: http_loopback.run,
    export_throughput.NAME: export_throughput.run,
    seed_vs_batched.NAME: seed_vs_batched.run,
    service_chain.NAME: service_chain.run,
    integration_cost.NAME: integration_cost.run,
    sampling.NAME: sampling.run,
    capacity.NAME: capacity.run,
    # The simulation runs for minutes: last.
    patterns.NAME: patterns.run,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="asynctrace overhead benchmarks (issue 7). Runs every scenario by default.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"scenarios to run: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--quick", action="store_true", help="a short pass (smoke test)")
    parser.add_argument(
        "--load-tool",
        choices=("auto", "wrk", "loop"),
        default="auto",
        help="HTTP load generator: wrk (auto installs it with apt-get when root) or an "
        "aiohttp loop",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop for every scenario and the apps it serves (uvloop: pip install uvloop)",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    names = args.names or list(SCENARIOS)
    try:
        use_loop(args.loop)
    except RuntimeError as exc:
        parser.error(str(exc))
    command = shlex.join(
        ["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]
    )
    machine = machine_info()
    machine["loop"] = loop_name()
    print(
        f"# {command}\n# {machine['cpu_model']}, {machine['cpu_count']} CPUs, Python "
        f"{machine['python']}, {machine['redis_server'] or 'redis-server ?'}, "
        f"{machine['loop']} loop",
        flush=True,
    )
    options = Options(quick=args.quick, load_tool=args.load_tool)
    results = []
    for name in names:
        started = time.perf_counter()
        result = SCENARIOS[name](options)
        results.append(result)
        print(f"\n{render(result)}\n  ({time.perf_counter() - started:.0f} s)", flush=True)
        write_json(args.json, results, command=command, quick=args.quick, machine=machine)
    print(f"\nresults: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
