"""What `client infer` and `client perf` send to: a model name resolved against the server reached.

A name resolves, first match wins, to:
1. a registry name (`cnn_mnist`): its spec, served as `<name>_<format>` (held-out samples, decoding);
2. a served Triton name that is a registry name plus a format suffix from the format table
   (`cnn_mnist_onnx_int8`), when the served tensors are the spec's;
3. any other served model: known only from the server's config and metadata (datatypes, dims,
   max_batch_size). Its inputs are random, zeros or a user's file (client/input_files.py); dynamic
   dims are fixed with `--shape NAME:D1,D2` as perf_analyzer's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec, TensorSpec

STRING_LENGTH = 16  # random BYTES elements: this many printable characters (perf_analyzer's --string-length)
RANDOM_INT_HIGH = 10  # random integers are drawn from [0, 10): small enough to be valid indices or ids


@dataclass(frozen=True)
class ServedTensor:
    """One input or output as the server declares it (batch axis excluded when the model batches).

    Args:
        datatype: Triton's name (`FP32`, `INT64`, `BYTES`, `BF16`, ...).
        dims: the config's dims, -1 where dynamic.
    """

    name: str
    datatype: str
    dims: tuple[int, ...]
    reshaped: bool = False  # the engine's wire/graph reshape is a registry-spec notion; never for served tensors

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype tritonclient sends this datatype from (object for BYTES, ml_dtypes' bfloat16 for BF16)."""
        from tritonclient.utils import triton_to_np_dtype

        np_type = triton_to_np_dtype(self.datatype)
        if np_type is None:
            raise InputError(f"tensor {self.name}: datatype {self.datatype} has no numpy type here")
        return np.dtype(np_type)

    def as_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "dims": list(self.dims)}


@dataclass(frozen=True)
class Target:
    """A served model the client talks to.

    Args:
        name: what the user named (registry name, or the Triton name of a server-only model).
        triton_name: the served model's name.
        inputs / outputs: the registry spec's tensors, or the server's `ServedTensor`s.
        max_batch_size: the served config's; 0 means the model does not batch (no batch axis).
        spec: the registry entry when there is one (held-out samples, decoding), else None.
        fmt: the registry format served, else None.
        resolved: how the name resolved: "registry", "triton name" or "server".
    """

    name: str
    triton_name: str
    inputs: tuple
    outputs: tuple
    max_batch_size: int
    spec: ModelSpec | None = None
    fmt: str | None = None
    resolved: str = "registry"

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @classmethod
    def of_spec(cls, spec: ModelSpec, fmt: str, served_max: int | None = None, resolved: str = "registry") -> Target:
        """The spec's model served as `fmt`: its tensors under the names that format serves them with."""
        limit = min(spec.max_batch_size, served_max or spec.max_batch_size)
        inputs, outputs = wire_tensors(spec, fmt)
        return cls(spec.name, spec.triton_name(fmt), inputs, outputs, limit, spec, fmt, resolved)

    def as_json(self) -> dict:
        return {
            "model": self.name,
            "triton_model": self.triton_name,
            "resolved": self.resolved,
            "max_batch_size": self.max_batch_size,
            "inputs": [
                t.as_json() if isinstance(t, ServedTensor) else {"name": t.name, "dtype": t.dtype} for t in self.inputs
            ],
        }


# ---------------------------------------------------------------- what the server says


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values or ())  # gRPC's JSON renders int64 as strings


def _datatype(config_type: str) -> str:
    name = str(config_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def served_tensors(config: dict) -> tuple[tuple[ServedTensor, ...], tuple[ServedTensor, ...], int]:
    """(inputs, outputs, max_batch_size) from a model config as JSON (HTTP's, or gRPC's `as_json`)."""
    config = config.get("config", config)
    ins = tuple(
        ServedTensor(t["name"], _datatype(t.get("data_type", "TYPE_FP32")), _ints(t.get("dims")))
        for t in config.get("input", [])
    )
    outs = tuple(
        ServedTensor(t["name"], _datatype(t.get("data_type", "TYPE_FP32")), _ints(t.get("dims")))
        for t in config.get("output", [])
    )
    return ins, outs, int(config.get("max_batch_size") or 0)


def wire_tensors(spec: ModelSpec, fmt: str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The spec's (inputs, outputs) named as format `fmt` serves them: its runtime's `wire_names`, the one
    mapping (pt2's INPUT__n / OUTPUT__n); the spec's own tensors where the names are the same."""
    names_in, names_out = F.get(fmt).handler.wire_names(spec)

    def renamed(tensors: tuple[TensorSpec, ...], names: tuple[str, ...]) -> tuple[TensorSpec, ...]:
        same = all(t.name == n for t, n in zip(tensors, names))
        return tensors if same else tuple(replace(t, name=n) for t, n in zip(tensors, names))

    return renamed(spec.inputs, names_in), renamed(spec.outputs, names_out)


def _matches_spec(
    spec: ModelSpec, inputs: tuple[ServedTensor, ...], outputs: tuple[ServedTensor, ...], fmt: str
) -> bool:
    """True when a served model's tensors are the spec's served as `fmt` (names, datatypes, dims): that model."""
    from tritonclient.utils import np_to_triton_dtype

    def same(mine, served) -> bool:
        return [(t.name, np_to_triton_dtype(np.dtype(t.dtype)), tuple(t.triton_dims)) for t in mine] == [
            (t.name, t.datatype, t.dims) for t in served
        ]

    mine_in, mine_out = wire_tensors(spec, fmt)
    return same(mine_in, inputs) and same(mine_out, outputs)


def resolve(name: str, client, fmt: str | None = None, model_files=None) -> Target:
    """The target `name` means on the server `client` reaches (see the module docstring for the order).

    Args:
        fmt: the registry format (`--format`) for a registry name; default the format table's default.
    Raises:
        ModelNotServed (exit 2) when the server serves nothing of that name; ServerError when unreachable.
    """
    from zeroserve.triton.errors import ModelNotServed

    known = registry.models(model_files)
    spec = registry.get(name, model_files) if name in known else None  # a bad model file is refused first
    if model_files and spec is None:
        registry.select(["all"], model_files)
    client.live()
    if spec is not None:
        triton_name = spec.triton_name(fmt or F.DEFAULT_FORMAT)
        if client.is_ready(triton_name) or not client.is_ready(name):
            client.require_model(triton_name)
            return Target.of_spec(spec, fmt or F.DEFAULT_FORMAT, client.max_batch_size(triton_name))
        # not served under the registry's name, but a model called `name` is: it is that model
    if not client.is_ready(name):
        if name in client.recovering():
            client.require_model(name)  # ModelRecovering: its stub died and the supervisor is reloading it
        served = client.served_models()
        hint = f"known models: {', '.join(known)}" if F.split_triton_name(name) is None and name not in known else ""
        raise ModelNotServed(
            f"the server at {client.url} does not serve {name!r} and it is not a registry name "
            f"(ready: {', '.join(served) or 'none'}){'; ' + hint if hint else ''}"
        )
    inputs, outputs, max_batch = served_tensors(client.model_config(name))
    split = F.split_triton_name(name)
    if split is not None and split[0] in known:
        base, form = split
        if fmt is not None and fmt != form.key:
            raise InputError(f"{name} is the {form.key} format of {base}; drop --format {fmt} or name {base}")
        spec = registry.get(base, model_files)
        if _matches_spec(spec, inputs, outputs, form.key):
            return Target.of_spec(spec, form.key, max_batch, resolved="triton name")
    if fmt is not None and name not in known:
        raise InputError(f"--format is for registry names; {name} is served as it is (drop --format)")
    if not inputs or not outputs:
        raise InputError(f"{name}: the server's config lists no inputs or no outputs")
    return Target(name, name, inputs, outputs, max_batch, resolved="server")


# ---------------------------------------------------------------- shapes


def parse_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`--shape NAME:D1,D2` (repeatable) -> {name: dims}, as perf_analyzer's --shape (batch axis excluded)."""
    out: dict[str, tuple[int, ...]] = {}
    for item in items or []:
        name, sep, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split(",")) if dims.strip() else None
        except ValueError:
            shape = None
        if not sep or not name or shape is None or any(d < 1 for d in shape):
            raise InputError(
                f"--shape {item!r}: expected NAME:D1,D2,... with positive sizes, for example --shape input__0:1,4"
            )
        out[name] = shape
    return out


def sample_shape(target: Target, t, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """One sample's wire shape of a server-known input: its dims with --shape's sizes where dynamic.

    Raises InputError naming the input and the flag when a dim is dynamic and no --shape fixes it.
    """
    given = shapes.get(t.name)
    if given is not None:
        if len(given) != len(t.dims) or any(d >= 0 and d != g for d, g in zip(t.dims, given)):
            raise InputError(
                f"--shape {t.name}:{','.join(map(str, given))} does not fit {target.triton_name}'s "
                f"dims {list(t.dims)} (batch axis excluded)"
            )
        return given
    if any(d < 0 for d in t.dims):
        example = ",".join(str(d if d >= 0 else 1) for d in t.dims)
        raise InputError(
            f"input {t.name} of {target.triton_name} has a dynamic dim {list(t.dims)}: give its "
            f"shape with --shape {t.name}:{example}"
        )
    return tuple(t.dims)


def check_shapes(target: Target, shapes: dict[str, tuple[int, ...]]) -> None:
    unknown = sorted(set(shapes) - {t.name for t in target.inputs})
    if unknown:
        raise InputError(
            f"--shape names {', '.join(unknown)}, not an input of {target.triton_name} "
            f"(inputs: {', '.join(t.name for t in target.inputs)})"
        )


def spec_time(target: Target, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """A registry model's dynamic axis length from --shape (its wire dims with the axis' size), or None."""
    check_shapes(target, shapes)
    time = None
    for t in target.inputs:
        if t.name not in shapes:
            continue
        given, dims = shapes[t.name], t.triton_dims
        if len(given) != len(dims) or any(d >= 0 and d != g for d, g in zip(dims, given)):
            raise InputError(
                f"--shape {t.name}:{','.join(map(str, given))} does not fit {target.triton_name}'s "
                f"dims {dims} (batch axis excluded)"
            )
        for d, g in zip(dims, given):
            if d < 0:
                if time is not None and time != g:
                    raise InputError(f"--shape gives the dynamic axis two sizes ({time}, {g}); they share one")
                time = g
    return time


# ---------------------------------------------------------------- generated inputs


def generated(
    datatype: str, dtype: np.dtype, shape: tuple[int, ...], mode: str, rng: np.random.Generator
) -> np.ndarray:
    """Random or zero data of one Triton datatype (every datatype, BYTES and BF16 included)."""
    if datatype == "BYTES":
        if mode == "zero":
            return np.full(shape, b"0", dtype=object)
        chars = rng.integers(ord("a"), ord("z") + 1, size=(*shape, STRING_LENGTH), dtype=np.uint8)
        flat = [row.tobytes() for row in chars.reshape(-1, STRING_LENGTH)]
        return np.array(flat, dtype=object).reshape(shape)
    if mode == "zero":
        return np.zeros(shape, dtype=dtype)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if datatype.startswith(("FP", "BF")):
        return rng.random(size=shape, dtype=np.float32).astype(dtype)
    high = min(RANDOM_INT_HIGH, int(np.iinfo(dtype).max) + 1)
    return rng.integers(0, high, size=shape).astype(dtype)


def generated_inputs(
    target: Target, batch_size: int, mode: str, shapes: dict[str, tuple[int, ...]], seed: int = 0
) -> list[np.ndarray]:
    """Random or zero inputs of a server-known model for one request (`--input random|zero`)."""
    if mode not in ("random", "zero"):
        raise InputError(
            f"--input {mode} needs held-out data: {target.triton_name} is known only from the "
            "server; use random or zero, or --input-data FILE"
        )
    check_shapes(target, shapes)
    rng = np.random.default_rng(seed)
    lead = (batch_size,) if target.batched else ()
    return [generated(t.datatype, t.dtype, (*lead, *sample_shape(target, t, shapes)), mode, rng) for t in target.inputs]


def validate(
    target: Target, arrays: list[np.ndarray], *, cast: bool = False, allow_nonfinite: bool = False
) -> list[np.ndarray]:
    """Check count, datatype and shape before anything is sent (a registry spec's rules for registry models).

    Values convert as `values.convert_input` allows (exactly, or lossy with `cast`); NaN and infinity
    are refused unless `allow_nonfinite`. A BF16 input takes any float (rounded to bfloat16, its nature).
    """
    from zeroserve.client.values import check_finite, convert_input, validate_inputs

    if target.spec is not None:
        return validate_inputs(target.spec, arrays, cast=cast, allow_nonfinite=allow_nonfinite)
    if len(arrays) != len(target.inputs):
        raise InputError(
            f"{target.triton_name} takes {len(target.inputs)} input(s) "
            f"({', '.join(t.name for t in target.inputs)}), got {len(arrays)}"
        )
    out = []
    for t, a in zip(target.inputs, arrays):
        a = np.asarray(a)
        if t.datatype == "BYTES":
            if a.dtype.kind in "US":
                a = np.array([v.encode() if isinstance(v, str) else v for v in a.reshape(-1)], dtype=object).reshape(
                    a.shape
                )
            elif a.dtype != object:
                raise InputError(f"{target.triton_name}: input {t.name} is BYTES, got {a.dtype}")
        elif a.dtype != t.dtype:
            check_finite(t.name, a, allow_nonfinite)
            if t.datatype == "BF16":
                a = convert_input(t.name, a, np.float32, cast=True, model=target.triton_name).astype(t.dtype)
            else:
                a = convert_input(t.name, a, t.dtype, cast=cast, model=target.triton_name)
        if t.datatype != "BYTES":
            check_finite(t.name, a.astype(np.float32) if t.datatype == "BF16" else a, allow_nonfinite)
        want = ("batch",) * target.batched + tuple(d if d >= 0 else "-1" for d in t.dims)
        lead = 1 if target.batched else 0
        if a.ndim != len(want) or any(d >= 0 and a.shape[lead + i] != d for i, d in enumerate(t.dims)):
            raise InputError(
                f"{target.triton_name}: input {t.name} must have shape ({', '.join(map(str, want))})"
                f"{' (batch axis included)' if target.batched else ''}, got {tuple(a.shape)}"
            )
        if 0 in a.shape:
            raise InputError(f"{target.triton_name}: input {t.name} is empty (shape {tuple(a.shape)})")
        out.append(np.ascontiguousarray(a))
    if target.batched and len({len(a) for a in out}) != 1:
        raise InputError(f"{target.triton_name}: inputs disagree on the batch size: {[len(a) for a in out]}")
    return out
