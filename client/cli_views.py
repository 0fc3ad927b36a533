"""What `client infer` and `client check` show: the answer's table, its JSON, the check's verdicts."""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from rich.table import Table

from zeroserve.app.cliutil import console
from zeroserve.records.check import CheckRow, CheckSkip


def print_infer(result: dict, protocol: str, spec, target, input_file) -> None:
    """`client infer`'s table: each row's outputs (the first values), what they mean, the target when known."""
    t = Table(title=f"{result['triton_model']} over {protocol} at {result['url']}")
    t.add_column("row", justify="right")
    for name in result["outputs"]:
        t.add_column(name)
    meanings = result["meaning"]
    if meanings is not None:
        t.add_column("meaning")
    if target is not None:
        t.add_column("target")
    rows = (
        len(meanings)
        if meanings is not None
        else (len(next(iter(result["outputs"].values()))) if result["batched"] else 1)
    )
    for i in range(rows):
        cells = [str(i)]
        for out in result["outputs"].values():
            flat = np.asarray(out[i] if result["batched"] else out).reshape(-1)
            cells.append(
                escape(
                    np.array2string(flat[:4], precision=3, separator=", ")
                    + (f" … ({flat.size} values)" if flat.size > 4 else "")
                )
            )
        if meanings is not None:
            cells.append(
                ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in meanings[i].items())
            )
        if target is not None:
            cells.append(spec.describe_target(target[i]))
        t.add_row(*cells)
    console.print(t)
    if result["validated"]:
        console.print(f"{result['validated']} output values agree with {input_file}'s validation_data", highlight=False)


def jsonable(a: np.ndarray | list):
    """An output as JSON: numbers as they are, BYTES as text (or base64 when not UTF-8), bfloat16 as floats;
    a list of rows (answers of differing shapes) row by row."""
    if isinstance(a, list):
        return [jsonable(row) for row in a]
    a = np.asarray(a)
    if a.dtype == object:
        import base64

        def text(v):
            if isinstance(v, bytes):
                try:
                    return v.decode()
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(v).decode()}
            return v

        return np.vectorize(text, otypes=[object])(a).tolist() if a.size else a.tolist()
    if a.dtype.kind not in "biuf":
        a = a.astype(np.float32)
    return a.tolist()


def check_table(rows: list[CheckRow], skipped: list[CheckSkip]) -> None:
    t = Table(title="served vs eager PyTorch")
    for c in ("served model", "proto", "n", "max abs", "max rel", "top-1", "metric served/eager", "status"):
        t.add_column(c, justify="right" if c in ("n", "max abs", "max rel", "top-1") else "left")
    for r in rows:
        if r.max_abs is None:
            failure = f"[red]FAIL[/] {r.failed_requests} failed requests: {r.error or ''}"
            t.add_row(r.triton_model, r.protocol, "", "", "", "", "", failure)
            continue
        agree = "-" if r.top1_agreement is None else f"{r.top1_agreement:.1%}"
        if r.failed_rules is not None:  # a variant, by its own rule
            status = (
                "[green]PASS[/]" if r.status == "PASS" else "[red]FAIL[/] " + "; ".join(r.failed_rules)
            ) + " (variant rule)"
        else:
            status = (
                "[green]PASS[/]"
                if r.status == "PASS"
                else (
                    f"[red]FAIL[/] {r.outside_tolerance} outside tol, {r.disagreements} top-1 flips"
                    + (f" ({r.error})" if r.error else "")
                    + (f", {r.failed_requests} failed requests" if r.failed_requests else "")
                )
            )
        if r.near_ties and r.failed_rules is None:
            status += f" ({r.near_ties} near ties)"
        metric = "max err" if r.metric == "max_abs_error" else "acc"
        served, eager = ("-" if v is None else f"{v:.4f}" for v in (r.metric_served, r.metric_eager))
        t.add_row(
            r.triton_model,
            r.protocol,
            str(r.samples),
            f"{r.max_abs:.1e}",
            f"{r.max_rel or 0.0:.1e}",
            agree,
            f"{metric} {served}/{eager}" if eager != "-" else "- (no targets)",
            status,
        )
    for s in skipped:
        t.add_row(s.model, "", "", "", "", "", "", f"[yellow]skipped[/] {escape(s.reason)}")
    console.print(t)


# ---------------------------------------------------------------- perf
