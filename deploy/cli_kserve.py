"""deploy --target kserve at the command line: its options checked first, plan's replicas, --check."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from zeroserve import formats as F
from zeroserve.app.cliutil import (
    console,
    err_console,
    print_json,
)
from zeroserve.deploy import kserve as KS
from zeroserve.deploy import plan as P
from zeroserve.errors import CheckFailed, InputError


def check_manifest_file(path: Path, target: str, as_json: bool) -> None:
    """`deploy --target kserve --check FILE`: KServe's rules, offline; exit 1 with one line per violation."""
    from zeroserve.deploy.kserve_check import check_file

    if target != "kserve":
        raise InputError("--check validates a KServe manifest: give --target kserve")
    problems = check_file(path)
    if as_json:
        print_json({"file": str(path), "valid": not problems, "violations": problems})
    else:
        for line in problems:
            err_console.print(f"[red]violation:[/] {escape(line)}", highlight=False, soft_wrap=True)
        console.print(
            f"{escape(str(path))}: "
            + (
                f"{len(problems)} violation(s)"
                if problems
                else "valid (KServe's CRD schema, closed objects; the kserve-tritonserver runtime's rules)"
            ),
            highlight=False,
            soft_wrap=True,
        )
    if problems:
        raise typer.Exit(CheckFailed.exit_code)


def kserve_options(
    target, name, namespace, storage_uri, protocol, deployment_mode, per_model, cpu_limit, target_rps, latency_budget_ms
) -> KS.KServeOptions | None:
    """The KServe manifest's options, checked before anything is deployed (None for the triton target)."""
    if target != "kserve":
        if target_rps is not None:
            raise InputError("--target-rps goes with --target kserve")
        return None
    kserve = KS.KServeOptions(
        name=name,
        namespace=namespace,
        storage_uri=storage_uri,
        protocol=protocol,
        deployment_mode=deployment_mode,
        per_model=per_model,
        cpu_limit=cpu_limit,
    )
    KS.check_options(kserve)
    if target_rps is not None and latency_budget_ms is None:
        raise InputError("--target-rps needs --latency-budget-ms (the budget the load is planned within)")
    return kserve


def kserve_plans(
    specs, deployed, formats, target_rps, latency_budget_ms, record, assume_same, headroom, repository
) -> dict:
    """`plan`'s replicas per deployed model for --target-rps (none without it)."""
    plans = {}
    if target_rps is not None:
        plan_fmt = formats[0] if formats and len(formats) == 1 else F.DEFAULT_FORMAT
        for spec in specs:
            if any(e.name == spec.triton_name(plan_fmt) for e in deployed):
                plans[spec.triton_name(plan_fmt)] = P.plan(
                    spec.name,
                    target_rps,
                    latency_budget_ms,
                    fmt=plan_fmt,
                    record_paths=record,
                    assume_same=assume_same,
                    headroom=headroom,
                    repository=repository,
                )
    return plans
