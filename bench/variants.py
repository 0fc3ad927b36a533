"""Served variants for `make bench`: fp32 ONNX against its int8 variant through the same server.

Bar (issue 16): served softmax_mnist int8 at c=16 reaches at least 0.95x served fp32's throughput,
median of 3 interleaved runs (fp32, int8, fp32, int8, ...), gRPC, perf's method with short windows.
The c=1 p50 and c=16 throughput of each variant go into the variant report (reports/variants/).
Figures are printed, never asserted; the machine's other load is in them.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

from rich.console import Console

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.run import run_perf
from zeroserve.data.readers import default_data_dir
from zeroserve.errors import ZeroserveError

MODEL = "softmax_mnist"
VARIANT = "int8"
RUNS = 3
WINDOW_S = 1.0
C16_BAR = 0.95
REPORT = Path("reports") / "variants"


def served_figures(rows: list[dict], timeout: float = 3.0) -> tuple[dict, str]:
    """For `export --report`: c=1 p50 and c=16 throughput of each row's variant and its base on the running
    zeroserve server (its state file; never a guess at default ports), where it serves them.

    Returns:
        ({triton name: figures}, a note saying what was measured or why nothing was).
    """
    from zeroserve.client.connection import Client
    from zeroserve.serve.state import resolve_server

    try:
        state = resolve_server()
        endpoint = Endpoint(state.host or "127.0.0.1", state.http_port, state.grpc_port or 0, "state file")
        with Client(endpoint, "grpc", timeout) as client:
            client.live()
            present = set(client.served_models())
    except ZeroserveError as exc:
        return {}, f"no served figures: {exc}"
    out: dict[str, dict] = {}
    for row in rows:
        spec = registry.get(row["model"])
        for fmt in (str(F.get(row["format"]).base), str(row["format"])):
            name = F.get(fmt).triton_name(spec.name)
            if name in present and name not in out:
                try:
                    out[name] = _levels(spec, endpoint, fmt)
                except ZeroserveError:
                    continue
    return out, (
        f"served figures from the server at {endpoint.url('grpc')} (gRPC, short windows)"
        if out
        else f"no served figures: the server at {endpoint.url('grpc')} serves none of these variants"
    )


def _levels(spec, endpoint: Endpoint, fmt: str) -> dict:
    rec = run_perf(
        spec,
        endpoint,
        fmt=fmt,
        protocol="grpc",
        concurrency=[1, 16],
        window_s=WINDOW_S,
        warmup_s=0.5,
        max_trials=4,
        allow_unstable=True,
    )
    by_c = {lv.concurrency: lv for lv in rec.levels}
    return {"c1_p50_ms": by_c[1].p50_ms, "c16_throughput": by_c[16].throughput}


def main(artifacts: Path = DEFAULT_ARTIFACTS, model: str = MODEL, variant: str = VARIANT) -> dict:
    from zeroserve.bench.common import ready_export
    from zeroserve.deploy.repository import deploy_model
    from zeroserve.export import exporter
    from zeroserve.export import report as variant_report
    from zeroserve.serve.private import private_server, temporary_cache

    console = Console(width=150)
    spec, key = registry.get(model), F.VARIANTS[variant].key
    with temporary_cache() as tmp:  # the benchmark's server never meets a user's
        try:
            folder = ready_export(spec, Path(artifacts), tmp / "fp32", default_data_dir())
            shutil.copytree(folder / model, tmp / "art" / model)
            rec = exporter.export_model(spec, tmp / "art", variants=variant, data_dir=default_data_dir())
            deploy_model(spec, tmp / "art", tmp / "repo", formats=("onnx", key), device="cpu")
        except ZeroserveError as exc:
            console.print(f"[yellow]served variant benchmark skipped:[/] {exc}")
            return {}
        with private_server(tmp / "repo", None, purpose="zeroserve bench (variants)", own_cache=False) as server:
            endpoint = Endpoint("127.0.0.1", server.state.http_port, server.state.grpc_port or 0, "bench")
            runs: dict[str, list[dict]] = {"onnx": [], key: []}
            for _ in range(RUNS):  # interleaved: the machine's drift lands on both
                for fmt in runs:
                    runs[fmt].append(_levels(spec, endpoint, fmt))
    med = {
        fmt: {k: statistics.median(r[k] for r in rs) for k in ("c1_p50_ms", "c16_throughput")}
        for fmt, rs in runs.items()
    }
    ratio = med[key]["c16_throughput"] / med["onnx"]["c16_throughput"]
    served = {F.get(fmt).triton_name(model): figures for fmt, figures in med.items()}
    rows = variant_report.rows([rec], (key,), served=served)
    console.print(variant_report.table(rows))
    console.print(
        f"  served {model} {variant}: c=16 {med[key]['c16_throughput']:.0f}/s vs fp32 "
        f"{med['onnx']['c16_throughput']:.0f}/s = {ratio:.2f}× (median of {RUNS} interleaved runs; "
        f"{'meets' if ratio >= C16_BAR else 'MISSES'} the {C16_BAR}× bar); c=1 p50 "
        f"{med[key]['c1_p50_ms']:.2f} vs {med['onnx']['c1_p50_ms']:.2f} ms",
        highlight=False,
    )
    paths = variant_report.write(rows, REPORT / "served")
    console.print(f"  served variant report: {paths['md']}", highlight=False)
    return {"runs": runs, "median": med, "ratio_c16": ratio}


if __name__ == "__main__":
    main()
