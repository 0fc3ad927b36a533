"""`make demo`: the main job end to end on the embedded default.

data fetch all into data/ -> train all -> export all -> deploy all (CPU instances) -> serve --detach
-> client check all -> a short client perf sweep of cnn_mnist with a report -> status -> stop
(always, also after a failed step). Each step is a real `zeroserve` command. The fetch writes
only into data/, never into the folder ZEROSERVE_DATA_DIR names (the demo only reads that one);
training then reads whichever of the two holds more of the data sets. Offline, the fetch fails
(exit 3) and the demo goes on as before, naming the data sets it has to do without; a model whose
course file is missing is reported as skipped, with the command that fetches it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zeroserve.triton.ports import resolve_free_ports


def main() -> int:
    console = Console(width=120)
    # chosen together (distinct, each held until all are chosen): the one free-port picker (zeroserve.triton.ports)
    http, grpc, metrics = resolve_free_ports("127.0.0.1", dict.fromkeys(("http", "grpc", "metrics"), 0)).values()
    endpoint = ["--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc)]
    steps = [
        ["train", "all"],
        ["export", "all"],
        ["deploy", "all", "--device", "cpu"],
        ["serve", "--detach", *endpoint, "--metrics-port", str(metrics)],
        ["client", "check", "all", *endpoint],
        [
            "client",
            "perf",
            "cnn_mnist",
            "--concurrency",
            "1,4,16",
            "--window",
            "1",
            "--max-trials",
            "4",
            "--allow-unstable",
            "--report",
            "reports/cnn_mnist",
            *endpoint,
        ],
        ["status", *endpoint[:4]],
    ]
    results: list[tuple[str, int, float]] = []
    env = _fetch_data(console, results)
    served = False
    try:
        for step in steps:
            rc = _run(console, step, results, env)
            served = served or (step[0] == "serve" and rc == 0)
            if rc:
                break
    finally:
        if served:
            _run(console, ["stop", *endpoint], results, env)
    table = Table(title="zeroserve demo")
    for col in ("step", "exit", "seconds"):
        table.add_column(col)
    for name, rc, seconds in results:
        shown = "[green]0[/]" if rc == 0 else f"[yellow]{rc} (went on without)[/]" if name == FETCH else f"[red]{rc}[/]"
        table.add_row(name, shown, f"{seconds:.1f}")
    console.print(table)
    failed = [rc for name, rc, _ in results if rc and name != FETCH]
    if not failed:
        console.print("every step passed; the perf report is in reports/cnn_mnist/")
    return failed[0] if failed else 0


FETCH = "data fetch"


def _fetch_data(console: Console, results: list) -> dict[str, str]:
    """Fetch every data set into data/; return the environment whose ZEROSERVE_DATA_DIR the steps read."""
    from zeroserve.data import fetch
    from zeroserve.data import models as data_models

    read_dir, fetch_dir = Path(os.environ.get("ZEROSERVE_DATA_DIR", "data")), Path("data")
    _run(console, ["data", "fetch", "all", "--data-dir", str(fetch_dir)], results)
    table = fetch.datasets()
    have = {d: {n for n, ds in table.items() if fetch.is_present(ds, d)} for d in (read_dir, fetch_dir)}
    use = fetch_dir if have[fetch_dir] >= have[read_dir] else read_dir
    users = data_models.models_by_dataset()
    lacking = [f"{n} ({', '.join(users[n])})" for n in table if n not in have[use]]
    console.print(
        f"data: the steps read {use}/"
        + (
            f"; without {'; '.join(lacking)}: those models fall back or are skipped (train says how)" if lacking else ""
        ),
        highlight=False,
    )
    return {**os.environ, "ZEROSERVE_DATA_DIR": str(use.resolve())}


def _run(console: Console, step: list[str], results: list, env: dict[str, str] | None = None) -> int:
    console.rule(f"zeroserve {' '.join(step)}")
    started = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "zeroserve", *step], env=env)
    results.append((" ".join(step[:2]), rc, time.perf_counter() - started))
    return rc


if __name__ == "__main__":
    sys.exit(main())
