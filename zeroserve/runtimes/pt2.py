"""The pt2 runtime: torch.export, compiled and packaged by AOTInductor (`model.pt2`), as Triton's pytorch backend
serves it (platform `torch_aoti`).

Export: `torch.export.export` with the spec's dynamic axes (recurrent layers as loops, see
`zeroserve.export.torch_export`), then `torch._inductor.aoti_compile_and_package`: C++ compiled here
with g++ (`$CXX`) for this machine's CPU (`-march=native`: the package records its instruction set,
e.g. `AVX512 AVX512_VNNI`, and runs only on CPUs that have it), or for CUDA where a GPU is present.
A model torch.export cannot trace (an op it does not support, a data-dependent shape) is an
InputError naming the op, never a gate failure; no C++ compiler is an InputError naming the one needed.

Deploy writes what the pytorch backend's README for the target release (26.05) documents for PT2:
`backend: "pytorch"`, `platform: "torch_aoti"`, `1/model.pt2`, `max_batch_size: 1` (batching above 1
and sequence batching are "not completed" there), tensors named from the package's call spec
(`INPUT__n` / `OUTPUT__n`, in forward-argument and output order: `wire_names` is the client's one
mapping from zeroserve's names), KIND_CPU for a CPU package. No 26.05 container runs here, so the
target check is recorded UNVERIFIED.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.export import CompiledFor, FormatEntry
from zeroserve.runtimes import Runtime

PLATFORM = "torch_aoti"
TARGET_STATUS = "UNVERIFIED"  # no Triton 26.05 container here: written and linted to its README's rules
TARGET_LIMITS = (
    "max_batch_size 1: Triton's pytorch backend has not completed PT2 batching above 1 or sequence batching "
    "(r26.05 README, Beta)",
)
_OP = re.compile(r"(aten\.\w+(?:\.\w+)?|torch\.ops\.[\w.]+|torch\.Tensor\.\w+|<built-in (?:function|method) \w+>)")
_CALL = re.compile(r"The following call raised this error:\s*File \"([^\"]+)\", line (\d+), in \w+\s*\n\s*(.+)")


def compiler() -> str:
    """The C++ compiler AOTInductor will use (`$CXX`, else g++), or InputError saying which one is needed."""
    import os

    from torch._inductor import cpp_builder

    try:
        return cpp_builder.get_cpp_compiler()
    except Exception:  # torch raises its InvalidCxxCompiler when none of its candidates runs
        wanted = os.environ.get("CXX") or "g++"
        raise InputError(
            f"pt2 needs a C++ compiler: AOTInductor compiles the model with {wanted} ($CXX, else g++) and "
            f"{wanted} was not found or does not run; install g++ (apt-get install g++) or set CXX"
        ) from None


def failing_op(exc: BaseException) -> str:
    """Where a torch.export failure happened: the model's source line it names (`if x.sum() > 0:` at
    model.py:6), else the op it names (`aten.nonzero.default`), else the kind of failure."""
    text = str(exc).split("The error above occurred when calling torch.export")[0]
    call = _CALL.search(text)
    kind = " (a data-dependent expression)" if "data-dependent" in text or "data dependent" in text else ""
    if call:
        code = call.group(3).split("  #")[0].strip()  # the line without its comment
        return f"`{code}` ({Path(call.group(1)).name}:{call.group(2)}){kind}"
    found = _OP.search(text)
    if found:
        return found.group(1) + kind
    return kind.strip(" ()") or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:240] if text else type(exc).__name__


def metadata(path: Path) -> dict:
    """The package's AOTInductor metadata (device, platform, machine, CPU ISA), or InputError when unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("_metadata.json")), None)
            data = json.loads(archive.read(member)) if member else None
    except (zipfile.BadZipFile, OSError, ValueError):
        data = None
    if not isinstance(data, dict) or "AOTI_DEVICE_KEY" not in data:
        raise InputError(f"{path} is not an AOTInductor package (no readable *_metadata.json with AOTI_DEVICE_KEY)")
    return {
        "device": data.get("AOTI_DEVICE_KEY"),
        "platform": data.get("AOTI_PLATFORM"),
        "machine": data.get("AOTI_MACHINE"),
        "cpu_isa": data.get("AOTI_CPU_ISA") or "",
        "compute_capability": data.get("AOTI_COMPUTE_CAPABILITY") or "",
    }


class Pt2(Runtime):
    key = "pt2"
    label = "AOTInductor"
    default = False  # opt-in: each model compiles C++ for ~30 s here
    max_batch_size = 1

    def preflight(self) -> None:
        compiler()

    def build(self, spec, module, path: Path, **options: Any) -> dict:
        import torch

        from zeroserve.runtimes import torch_export

        cxx = compiler()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        module = module.to(device)
        started = time.perf_counter()
        try:
            program = torch_export.export_program(spec, module, device=device)
        except Exception as exc:  # an op torch.export cannot trace: this model cannot be made pt2
            raise InputError(
                f"{spec.name}: pt2 cannot be made: torch.export fails at {failing_op(exc)}: {_first_line(exc)}"
            ) from None
        exported = time.perf_counter() - started
        try:
            with torch_export.quiet():
                torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        except Exception as exc:
            raise InputError(
                f"{spec.name}: pt2 cannot be made: AOTInductor fails to compile it ({_first_line(exc)})"
            ) from None
        meta = metadata(path)
        return {
            "torch_export_seconds": round(exported, 3),
            "compile_seconds": round(time.perf_counter() - started - exported, 3),
            "compiled_for": {**meta, "cpu": options.get("cpu", "") if device == "cpu" else "", "compiler": cxx},
            "torch": torch.__version__,
            "dynamic_axes": {t.name: t.dynamic_axes for t in spec.inputs},
        }

    def runner(self, path: Path, spec, threads: int | None = None) -> Callable:
        import torch

        from zeroserve.artifacts import output_arrays

        device = "cuda" if metadata(path)["device"] == "cuda" else "cpu"
        package = torch._inductor.aoti_load_package(str(path))

        def run(inputs):
            with torch.inference_mode():
                out = package(*[torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in inputs])
            return output_arrays(out)

        return run

    def wire_names(self, spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (
            tuple(f"INPUT__{i}" for i in range(len(spec.inputs))),
            tuple(f"OUTPUT__{i}" for i in range(len(spec.outputs))),
        )

    def check_target(self, name: str, path: Path, entry: FormatEntry | None, release: Any) -> dict:
        meta = metadata(path)
        recorded = entry.compiled_for.device if entry is not None and entry.compiled_for else None
        if recorded != meta["device"]:
            raise InputError(
                f"{name}: {path} is compiled for {meta['device']}, but its export record says {recorded}; "
                "run export again"
            )
        return {}  # what deploy records about the package is deploy_notes

    def check_max_batch_size(self, what: str, requested: int | None) -> None:
        if requested is not None and requested > self.max_batch_size:
            raise InputError(
                f"{what}: --max-batch-size {requested} is above {self.max_batch_size}, the most Triton's pytorch "
                f"backend serves a PT2 package with ({TARGET_LIMITS[0]}); deploy pt2 with --max-batch-size 1"
            )

    def configure(self, model, entry: FormatEntry):
        names_in = [f"INPUT__{i}" for i in range(len(model.inputs))]
        rename = dict(zip((t.name for t in model.inputs), names_in))
        warmup = model.warmup
        if warmup is not None:
            warmup = replace(warmup, inputs={rename.get(k, k): v for k, v in warmup.inputs.items()})
        gpu = entry.compiled_for is not None and entry.compiled_for.device == "cuda"
        return replace(
            model,
            backend="pytorch",
            platform=PLATFORM,
            max_batch_size=1,
            max_queue_delay_us=None,  # nothing to batch at max_batch_size 1
            preferred_batch_sizes=(),
            inputs=tuple(replace(t, name=n) for t, n in zip(model.inputs, names_in)),
            outputs=tuple(replace(t, name=f"OUTPUT__{i}") for i, t in enumerate(model.outputs)),
            instance_kind="KIND_GPU" if gpu else "KIND_CPU",
            tensorrt=None,
            warmup=warmup,
        )

    def check_artifact(self, path: Path) -> None:
        metadata(path)

    def lint(self, model, path: Path, warmup: list[np.ndarray] | None) -> list[np.ndarray] | None:
        self._lint_rules(model, path)
        if warmup is None:
            raise CheckFailed(f"{model.name}: no warmup sample to run the package on")
        try:
            return self.runner(path, None)(warmup)
        except Exception as exc:
            raise CheckFailed(
                f"{model.name}: the AOTInductor package on the warmup sample, inputs in config order "
                f"{[t.name for t in model.inputs]}, failed: {_first_line(exc)}"
            ) from None

    def _lint_rules(self, model, path: Path) -> None:
        """The pytorch backend's PT2 rules for the target release (its README)."""
        problems = []
        if model.backend != "pytorch" or model.platform != PLATFORM:
            found = f"{model.backend!r}/{model.platform!r}"
            problems.append(f'backend "pytorch" with platform "{PLATFORM}" (found {found})')
        if model.max_batch_size > 1:
            problems.append(f"max_batch_size at most 1 (found {model.max_batch_size})")
        for kind, tensors, prefix in (("input", model.inputs, "INPUT"), ("output", model.outputs, "OUTPUT")):
            want = [f"{prefix}__{i}" for i in range(len(tensors))]
            if [t.name for t in tensors] != want:
                problems.append(f"{kind}s named {want} from the call spec (found {[t.name for t in tensors]})")
        try:
            device = metadata(path)["device"]
        except InputError as exc:
            raise CheckFailed(f"{model.name}: {exc}") from None
        kind = "KIND_GPU" if device == "cuda" else "KIND_CPU"
        if model.instance_kind != kind:
            problems.append(f"instance kind {kind} for a package compiled for {device} (found {model.instance_kind})")
        if problems:
            raise CheckFailed(f"{model.name}: PT2 on Triton's pytorch backend needs " + "; ".join(problems))

    def deploy_notes(self, entry: FormatEntry) -> tuple[dict, list[str]]:
        built = entry.compiled_for or CompiledFor()
        notes = {"target_status": TARGET_STATUS, "target_limits": list(TARGET_LIMITS), "compiled_for": built.to_json()}
        if built.device == "cuda":
            where = f"GPUs of compute capability {built.compute_capability or '?'}"
        else:
            isa, cpu = built.cpu_isa or "same", built.cpu if built.cpu is not None else "?"
            where = f"CPUs with the {isa} instruction set (compiled on {cpu})"
        return notes, [f"the pt2 package runs only on {where}; compile it on (or for) the serving machine's kind"]


RUNTIME = Pt2()
