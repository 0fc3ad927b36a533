"""A user's own models: specs from model files and installed packages, checked before any stage runs.

A model file is a Python file defining `zeroserve_models() -> list[ModelSpec]`; an installed package
registers the same function under the entry-point group `zeroserve.models`. Every command that takes
a model name takes `--model-file PATH` (repeatable; env `ZEROSERVE_MODEL_FILES`, an os.pathsep list).
`zeroserve.registry` resolves these names beside the course's; this module loads and checks them.

A spec's relative `checkpoint` is relative to its model file's folder. `verify` runs the example
input through the module's forward (and loads the checkpoint into it), so a spec that does not
match its module is refused with one line before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from zeroserve.errors import InputError, ZeroserveError
from zeroserve.spec import ModelSpec

ENV = "ZEROSERVE_MODEL_FILES"
ENTRY_POINT_GROUP = "zeroserve.models"
FUNCTION = "zeroserve_models"
TENSOR_NAME = re.compile(r"^(?P<base>[A-Za-z_][A-Za-z0-9_]*?)__(?P<index>\d+)$")  # Triton's <name>__<index>

_files: dict[tuple[Path, int], list[ModelSpec]] = {}  # (resolved path, mtime) -> its specs
_entry_points: list[ModelSpec] | None = None
_verified: set[int] = set()


def env_files() -> list[Path]:
    """The model files of `ZEROSERVE_MODEL_FILES` (os.pathsep separated)."""
    return [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def _specs_from(function, where: str) -> list[ModelSpec]:
    try:
        specs = function()
    except ZeroserveError as exc:
        raise InputError(f"{where}: {exc}") from None
    except Exception as exc:  # the user's code: one line, never a traceback
        raise InputError(f"{where}: {FUNCTION}() raised {_first_line(exc)}") from None
    if isinstance(specs, ModelSpec):
        specs = [specs]
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, ModelSpec) for s in specs):
        raise InputError(
            f"{where}: {FUNCTION}() must return a list of zeroserve.spec.ModelSpec, got {type(specs).__name__}"
        )
    return list(specs)


def load_file(path: str | Path) -> list[ModelSpec]:
    """The specs a model file's `zeroserve_models()` returns, their origin and checkpoint paths set."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file {path} " + ("is not a file" if path.exists() else "does not exist"))
    resolved = path.resolve()
    key = (resolved, resolved.stat().st_mtime_ns)
    if key in _files:
        return _files[key]
    module_name = "zeroserve_user_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"model file {path} is not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    if str(resolved.parent) not in sys.path:  # so the file can import its neighbours, as `python file.py` would
        sys.path.append(str(resolved.parent))
    sys.modules[module_name] = module  # inspect (torch.jit.script) finds the source through it
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        line = next((f" (line {tb.lineno})" for tb in _tb_frames(exc) if tb.filename == str(resolved)), "")
        raise InputError(f"model file {path} failed to import{line}: {_first_line(exc)}") from None
    function = getattr(module, FUNCTION, None)
    if not callable(function):
        raise InputError(
            f"model file {path} does not define {FUNCTION}(); "
            f"add `def {FUNCTION}() -> list[ModelSpec]` returning your models"
        )
    specs = [_anchor(s, str(path), resolved.parent) for s in _specs_from(function, f"model file {path}")]
    _files[key] = specs
    return specs


def _tb_frames(exc: BaseException):
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        return [traceback.FrameSummary(exc.filename, exc.lineno or 0, "")]
    return traceback.extract_tb(exc.__traceback__)


def _anchor(spec: ModelSpec, origin: str, folder: Path | None) -> ModelSpec:
    """The spec with its origin, and a relative checkpoint made relative to the folder of the file defining it."""
    checkpoint = spec.checkpoint
    if checkpoint is not None and folder is not None and not checkpoint.is_absolute():
        checkpoint = folder / checkpoint
    return dataclasses.replace(spec, origin=origin, checkpoint=checkpoint)


def load_entry_points() -> list[ModelSpec]:
    """The specs of every installed package's `zeroserve.models` entry point (loaded once per process)."""
    global _entry_points
    if _entry_points is None:
        found: list[ModelSpec] = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP})"
            try:
                function = ep.load()
            except Exception as exc:
                raise InputError(f"{where} failed to load: {_first_line(exc)}") from None
            try:
                folder = Path(inspect.getfile(function)).resolve().parent
            except TypeError:
                folder = None
            found += [_anchor(s, f"entry point {ep.value}", folder) for s in _specs_from(function, where)]
        _entry_points = found
    return _entry_points


def load(
    model_files: Sequence[str | Path] | None,
    reserved: Mapping[str, ModelSpec],
    on_error: Callable[[InputError], None] | None = None,
) -> dict[str, ModelSpec]:
    """User specs by name: entry points, then each model file (None: `ZEROSERVE_MODEL_FILES`).

    Args:
        on_error: given, a file or name that fails is passed to it and left out, and the rest load
            (`zeroserve models` lists what loads); None raises the first failure.

    Raises:
        InputError: a file or entry point that cannot be loaded, or a name that clashes with a course
            model or another user model.
    """

    def failed(exc: InputError) -> None:
        if on_error is None:
            raise exc
        on_error(exc)

    out: dict[str, ModelSpec] = {}
    files = env_files() if model_files is None else [Path(p) for p in model_files]
    specs: list[ModelSpec] = []
    try:
        specs += load_entry_points()
    except InputError as exc:
        failed(exc)
    for f in dict.fromkeys(files):
        try:
            specs += load_file(f)
        except InputError as exc:
            failed(exc)
    for spec in specs:
        if spec.name in reserved:
            failed(InputError(f"{spec.origin}: model name {spec.name!r} is a course model's; choose another name"))
        elif spec.name in out:
            failed(
                InputError(
                    f"{spec.origin}: model name {spec.name!r} is also defined by "
                    f"{out[spec.name].origin}; names must be unique"
                )
            )
        else:
            out[spec.name] = spec
    return out


def untrained_outputs(spec: ModelSpec) -> list[str]:
    """The outputs `zeroserve train` leaves untrained: training's loss reads the primary output's target
    only (`Split.train_target`), so every other output of a spec it trains keeps its initial weights."""
    if spec.train is None or spec.checkpoint is not None:
        return []
    return [t.name for t in spec.outputs if t.name != spec.primary_output.name]


def _warn_untrained_outputs(spec: ModelSpec) -> None:
    names = untrained_outputs(spec)
    if names:
        import warnings

        warnings.warn(
            f"{spec.name}: output(s) {', '.join(names)} go untrained by `zeroserve train`: its loss "
            f"reads only the primary output {spec.primary_output.name} against Split.train_target "
            "(train the model yourself and give checkpoint= to serve every output trained)",
            stacklevel=3,
        )


def verify(spec: ModelSpec) -> ModelSpec:
    """Check a user spec against its module (a course spec passes through): tensor names, the
    example input through `forward`, every output's dtype and shape, and the checkpoint's fit.

    Raises:
        InputError: one line saying what does not match and where.
    """
    if spec.origin == "course" or id(spec) in _verified:
        return spec
    _warn_untrained_outputs(spec)
    import torch

    from zeroserve.artifacts import load_trained, output_arrays

    where = f"{spec.name} ({spec.origin})"
    for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for i, t in enumerate(tensors):
            m = TENSOR_NAME.match(t.name)
            if m is None or int(m["index"]) != i:
                raise InputError(
                    f"{where}: {kind} {t.name!r} must be named <name>__{i} (Triton's "
                    f"<name>__<index> convention, in forward's order)"
                )
            if not _triton_dtype(t.dtype):
                raise InputError(f"{where}: {kind} {t.name} has dtype {t.dtype!r}, which Triton does not serve")
    try:
        module = load_trained(spec, Path("artifacts")) if spec.checkpoint is not None else spec.build()
    except ZeroserveError:
        raise
    except Exception as exc:
        raise InputError(f"{where}: build() raised {_first_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{where}: build() returned {type(module).__name__}, not a torch.nn.Module")
    _check_signature(spec, module.forward, where)
    batch, time = 2, max(spec.seq_lengths or (1,))
    inputs = spec.random_inputs(batch, np.random.default_rng(0), time=time)
    try:
        with torch.no_grad():
            outputs = output_arrays(module.eval()(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]))
    except Exception as exc:
        shapes = ", ".join(f"{t.name} {a.dtype}{list(a.shape)}" for t, a in zip(spec.inputs, inputs))
        raise InputError(
            f"{where}: the example input ({shapes}) does not run through forward: "
            f"{_first_line(exc)}; make the spec's inputs match the module"
        ) from None
    if len(outputs) != len(spec.outputs):
        raise InputError(
            f"{where}: forward returned {len(outputs)} output(s), the spec declares "
            f"{len(spec.outputs)} ({', '.join(t.name for t in spec.outputs)})"
        )
    for t, a in zip(spec.outputs, outputs):
        want = [batch, *t.dims]
        if (
            str(a.dtype) != t.dtype
            or a.ndim != len(want)
            or any(isinstance(w, int) and w != n for w, n in zip(want, a.shape))
        ):
            raise InputError(
                f"{where}: forward returned {t.name} as {a.dtype}{list(a.shape)} for a batch of "
                f"{batch}; its spec says {t.dtype}{['batch', *t.dims]}"
            )
    _verified.add(id(spec))
    return spec


def _triton_dtype(dtype: str) -> bool:
    from tritonclient.utils import np_to_triton_dtype

    try:
        return np_to_triton_dtype(np.dtype(dtype)) is not None
    except TypeError:
        return False


def _check_signature(spec: ModelSpec, forward, where: str) -> None:
    """The spec's inputs against forward's positional parameters: their count, and an order that
    contradicts forward's own parameter names."""
    params = list(inspect.signature(forward).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not len(required) <= len(spec.inputs) <= len(positional):
        raise InputError(
            f"{where}: the spec has {len(spec.inputs)} input(s) "
            f"({', '.join(t.name for t in spec.inputs)}) but forward takes "
            f"({', '.join(p.name for p in positional)})"
        )
    names = [p.name for p in positional]
    for i, t in enumerate(spec.inputs):
        match = TENSOR_NAME.match(t.name)
        base = match["base"] if match else t.name
        if base in names and names.index(base) != i:
            raise InputError(
                f"{where}: input {t.name} is at position {i} but forward takes {base} at position "
                f"{names.index(base)}; list the inputs in forward's order"
            )
