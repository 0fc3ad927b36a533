"""`make demo`: the main job end to end on the embedded default.

train all -> export all -> deploy all (CPU instances) -> serve --detach -> client check all ->
a short client perf sweep of cnn_mnist with a report -> status -> stop (always, also after a
failed step). Each step is a real `zeroserve` command; a model whose course file is missing is
reported as skipped, naming the file and where to put it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    console = Console(width=120)
    http, grpc, metrics = free_port(), free_port(), free_port()
    endpoint = ["--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc)]
    steps = [
        ["train", "all"],
        ["export", "all"],
        ["deploy", "all", "--device", "cpu"],
        ["serve", "--detach", *endpoint, "--metrics-port", str(metrics)],
        ["client", "check", "all", *endpoint],
        ["client", "perf", "cnn_mnist", "--concurrency", "1,4,16", "--window", "1", "--max-trials", "4",
         "--allow-unstable", "--report", "reports/cnn_mnist", *endpoint],
        ["status", *endpoint[:4]],
    ]
    results: list[tuple[str, int, float]] = []
    served = False
    try:
        for step in steps:
            rc = _run(console, step, results)
            served = served or (step[0] == "serve" and rc == 0)
            if rc:
                break
    finally:
        if served:
            _run(console, ["stop", *endpoint], results)
    table = Table(title="zeroserve demo")
    for col in ("step", "exit", "seconds"):
        table.add_column(col)
    for name, rc, seconds in results:
        table.add_row(name, "[green]0[/]" if rc == 0 else f"[red]{rc}[/]", f"{seconds:.1f}")
    console.print(table)
    failed = [rc for _, rc, _ in results if rc]
    if not failed:
        console.print("every step passed; the perf report is in reports/cnn_mnist/")
    return failed[0] if failed else 0


def _run(console: Console, step: list[str], results: list) -> int:
    console.rule(f"zeroserve {' '.join(step)}")
    started = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "zeroserve", *step])
    results.append((" ".join(step[:2]), rc, time.perf_counter() - started))
    return rc


if __name__ == "__main__":
    sys.exit(main())
