"""A variant's gate: run in-process beside fp32 and eager PyTorch on the held-out set, held to its rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from zeroserve import formats as F
from zeroserve import parity
from zeroserve.export import runners
from zeroserve.records.export import FormatEntry
from zeroserve.spec import ModelSpec, Split


def gpu_present() -> bool:
    """A CUDA device is usable here (onnxruntime-gpu lists its CUDA provider even where none is)."""
    import torch

    return torch.cuda.is_available()


def variant_runner(path: Path, spec: ModelSpec, fmt: F.Format, threads: int | None = None) -> Callable:
    """Run the variant in-process: on the GPU for a gpu_only format, else on ONNX Runtime's CPU provider."""
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if fmt.gpu_only else ("CPUExecutionProvider",)
    return runners.onnx_runner(path, spec, threads, providers)


def in_batches(fn: Callable, inputs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """`fn` over the rows of `inputs` in batches of at most `batch`; outputs concatenated."""
    chunks = [fn([np.ascontiguousarray(a[s : s + batch]) for a in inputs]) for s in range(0, len(inputs[0]), batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def run_variant_gate(
    spec: ModelSpec,
    fmt: F.Format,
    runner: Callable | None,
    split: Split,
    eager: list[np.ndarray],
    rule: parity.VariantRule,
    tol: parity.Tolerance,
) -> dict:
    """The variant gate on the whole held-out set; the entry fields export.json keeps under the variant."""
    held = {"samples": int(len(split.test_inputs[0])), "data": split.source}
    if runner is None:  # fp16 without a GPU: written and linted, its accuracy not measured
        return {
            "status": "UNVERIFIED",
            "rule": rule.as_json(),
            "held_out": held,
            "reason": "no GPU here: ONNX Runtime's CPU provider lacks most float16 kernels, so the variant "
            "is written and linted but its accuracy is not measured; it is verified where a GPU is",
        }
    try:
        got = in_batches(runner, split.test_inputs, spec.max_batch_size)
        verdict = parity.judge_variant(spec, got, eager, split.test_target, rule, tol)
    except Exception as exc:  # a variant graph that cannot run the held-out set fails its gate, with the reason
        verdict = {
            "passed": False,
            "failed_rules": [f"{type(exc).__name__}: {str(exc).strip()[:300]}"],
            "rule": "",
            "max_abs": float("inf"),
            "max_rel": float("inf"),
            "top1_agreement": None,
        }
    keep = (
        "metric",
        "metric_fp32",
        "metric_variant",
        "metric_bound",
        "top1_agreement",
        "max_abs",
        "max_rel",
        "near_ties",
        "disagreements",
    )
    return {
        "status": "PASS" if verdict["passed"] else "FAIL",
        "rule": {**rule.as_json(), "text": verdict["rule"]},
        "held_out": held,
        **{k: verdict.get(k) for k in keep},
        "failed_rules": verdict["failed_rules"],
    }


def failure_line(spec: ModelSpec, key: str, entry: FormatEntry) -> str:
    """One line: which variant failed which rule, with the numbers."""
    return f"{spec.name} {key} failed the variant gate: {'; '.join(entry.failed_rules or ['?'])}"
