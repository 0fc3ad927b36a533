"""A user's input file for `client infer` and `client perf`: .npy (one input), .npz or .json keyed by input
name, or perf_analyzer's input-data JSON (per-request entries: flat values, {content, shape} or
{b64, shape}; BYTES; and its `validation_data`, checked against the answers as perf_analyzer does).

Reading only: what the values may be (dtype, NaN, shape) is `model.validate`'s.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.client.model import ServedTensor, Target, check_shapes
from zeroserve.errors import CheckFailed, InputError
from zeroserve.spec import ModelSpec


def _json(path: Path) -> Any:
    """A JSON input file parsed once while it is unchanged: perf reads it for every request variant, every
    server's reference answer and every validation. Callers only read what it returns."""
    try:
        st = path.stat()
        return _parsed(str(path.resolve()), st.st_mtime_ns, st.st_size)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read input file {path}: {exc}") from None


@functools.lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> Any:
    return json.loads(Path(path).read_text())


def load_input_file(spec: ModelSpec | Target, path: Path) -> list[np.ndarray]:
    """The model's input tensors from .npy (single-input models), .npz or .json (keyed by input name).

    A .json file may also be a bare list for a single-input model. Batch axis included.
    """
    path = Path(path)
    if not path.is_file():
        hint = ""
        if str(path) in ("random", "zero", "sample"):  # perf's --input modes given to a file option
            hint = (
                f" (for generated data: `client infer --generate {path}`, `client perf --input {path}`)"
                if str(path) != "sample"
                else " (for held-out samples: `client infer --samples N` or `--row I`, `client perf --input sample`)"
            )
        raise InputError(f"input file not found: {path}{hint}")
    names = [t.name for t in spec.inputs]
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if len(names) != 1:
                raise InputError(
                    f"{spec.name} takes {len(names)} inputs ({', '.join(names)}): "
                    "give them in a .npz or .json file keyed by name"
                )
            return [np.load(path, allow_pickle=False)]
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        elif suffix == ".json":
            data = _json(path)
        else:
            raise InputError(f"input file {path}: use .npy, .npz or .json")
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read input file {path}: {exc}") from None
    if isinstance(data, list) and len(names) == 1:
        data = {names[0]: data}
    if not isinstance(data, dict):
        raise InputError(f"input file {path}: expected an object keyed by input name ({', '.join(names)})")
    missing = [n for n in names if n not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise InputError(
            f"input file {path}: {spec.name} takes {', '.join(names)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    try:
        return [np.asarray(data[n]) for n in names]
    except ValueError as exc:  # ragged JSON lists
        raise InputError(f"input file {path}: {exc}") from None


def is_perf_analyzer_json(data: Any) -> bool:
    """perf_analyzer's input-data JSON: an object whose `data` is a list of per-request entries."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("data"), list)
        and all(isinstance(e, (dict, list)) for e in data["data"])
    )


def _decode_value(
    t, dtype: np.dtype, datatype: str, value: Any, shape: tuple[int, ...] | None, where: str
) -> np.ndarray:
    """One tensor of one perf_analyzer entry: flat values, {content, shape} or {b64, shape}."""
    if isinstance(value, dict):
        if "shape" in value:
            shape = tuple(int(d) for d in value["shape"])
        if isinstance(value.get("content"), dict):  # {"content": {"b64": ...}, "shape": [...]}
            value = value["content"]
        if "b64" in value:
            raw = base64.b64decode(value["b64"])
            if datatype == "BYTES":
                from tritonclient.utils import deserialize_bytes_tensor

                arr = deserialize_bytes_tensor(raw)
            else:
                if len(raw) % dtype.itemsize:
                    raise InputError(f"{where}: b64 holds {len(raw)} bytes, not a whole number of {datatype} values")
                arr = np.frombuffer(raw, dtype=dtype).copy()
        elif "content" in value:
            arr = _values(value["content"], dtype, datatype, where)
        else:
            raise InputError(f"{where}: expected flat values, or an object with content or b64 (and shape)")
    else:
        arr = _values(value, dtype, datatype, where)
    if shape is None:
        raise InputError(
            f"{where}: input {t.name} has a dynamic dim: give its shape in the file "
            f'("shape": [...]) or with --shape {t.name}:D1,D2'
        )
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise InputError(f"{where}: {arr.size} values do not fill shape {list(shape)}")
    return arr.reshape(shape)


def _values(content: Any, dtype: np.dtype, datatype: str, where: str) -> np.ndarray:
    if datatype == "BYTES":
        flat = np.asarray(content, dtype=object).reshape(-1)
        return np.array([v.encode() if isinstance(v, str) else bytes(v) for v in flat], dtype=object)
    try:
        arr = np.asarray(content).reshape(-1)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"values of type {arr.dtype}")
        return arr  # converted to the datatype by `validate`, with --cast's and --allow-nonfinite's rules
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: not {datatype} values ({exc})") from None


def perf_analyzer_rows(
    target: Target, data: dict, shapes: dict[str, tuple[int, ...]], path: Path, indices: list[int] | None = None
) -> list[list[np.ndarray]]:
    """The entries of perf_analyzer's `data` list (those at `indices`, else all) as one sample per input
    (wire shapes, batch axis excluded); only these are decoded."""
    entries = data["data"]
    if not entries:
        raise InputError(f"{path}: its data list is empty")
    names = [t.name for t in target.inputs]
    rows = []
    for i in range(len(entries)) if indices is None else indices:
        entry = entries[i]
        if isinstance(entry, list):  # a sequence's steps: perf_analyzer's streams; one stream's steps in order
            raise InputError(f"{path}: data[{i}] is a list of sequence steps; zeroserve sends no sequences")
        missing = [n for n in names if n not in entry]
        if missing:
            raise InputError(
                f"{path}: data[{i}] has no {', '.join(missing)} ({target.triton_name} takes {', '.join(names)})"
            )
        row = []
        for t in target.inputs:
            if isinstance(t, ServedTensor):
                dims, datatype, dtype = t.dims, t.datatype, t.dtype
            else:
                from tritonclient.utils import np_to_triton_dtype

                dims, dtype = tuple(t.triton_dims), np.dtype(t.dtype)
                datatype = np_to_triton_dtype(dtype)
            shape = shapes.get(t.name) or (None if any(d < 0 for d in dims) else dims)
            row.append(_decode_value(t, dtype, datatype, entry[t.name], shape, f"{path}: data[{i}].{t.name}"))
        rows.append(row)
    return rows


def read_input_file(
    target: Target,
    path: Path,
    shapes: dict[str, tuple[int, ...]] | None = None,
    rows: int | None = None,
    start: int = 0,
) -> list[np.ndarray]:
    """A user's tensors for `target`: .npy (one input), .npz or .json keyed by input name (batch axis
    included where the model batches), or perf_analyzer's input-data JSON (one request per entry, no
    batch axis: entries become the rows of one batch).

    Args:
        rows: perf's batch: perf_analyzer JSON entries are taken in order (cycled) from entry `start` up
            to this many rows, so entries of other shapes beyond them do not matter; None: every entry.
    """
    path = Path(path)
    shapes, want = shapes or {}, rows
    if path.suffix.lower() == ".json" and path.is_file():
        data = _json(path)
        if is_perf_analyzer_json(data):
            check_shapes(target, shapes)
            n = len(data["data"])
            indices = None if want is None or not n else [(start + i) % n for i in range(want if target.batched else 1)]
            entries = perf_analyzer_rows(target, data, shapes, path, indices)
            if not target.batched:
                if len(entries) > 1:
                    raise InputError(
                        f"{path}: {target.triton_name} does not batch (max_batch_size 0): give one data entry"
                    )
                return entries[0]
            arrays = []
            for k, t in enumerate(target.inputs):
                shapes_k = {r[k].shape for r in entries}
                if len(shapes_k) > 1:
                    raise InputError(
                        f"{path}: the entries give {t.name} different shapes {sorted(shapes_k)}; "
                        "one request holds one shape"
                    )
                stacked = np.stack([r[k] for r in entries])
                arrays.append(stacked.reshape(len(entries)) if getattr(t, "reshaped", False) else stacked)
            return arrays
    return load_input_file(target, path)


def read_input_requests(
    target: Target, path: Path, shapes: dict[str, tuple[int, ...]] | None = None
) -> list[list[np.ndarray]]:
    """The requests `client infer --input` sends: one for a file keyed by input; for perf_analyzer's JSON,
    as perf_analyzer does, an entry per request, except that consecutive entries of one shape go as one
    batch (so a file of one shape is one request). The answers keep the entries' order."""
    path = Path(path)
    if not (
        target.batched and path.suffix.lower() == ".json" and path.is_file() and is_perf_analyzer_json(_json(path))
    ):
        return [read_input_file(target, path, shapes)]
    data = _json(path)
    shapes = shapes or {}
    check_shapes(target, shapes)
    groups: list[list[list[np.ndarray]]] = []
    for row in perf_analyzer_rows(target, data, shapes, path, None):
        if groups and [a.shape for a in groups[-1][0]] == [a.shape for a in row]:
            groups[-1].append(row)
        else:
            groups.append([row])
    requests = []
    for rows in groups:
        arrays = []
        for k, t in enumerate(target.inputs):
            stacked = np.stack([r[k] for r in rows])
            arrays.append(stacked.reshape(len(rows)) if getattr(t, "reshaped", False) else stacked)
        requests.append(arrays)
    return requests


def perf_analyzer_entries(path: Path) -> int | None:
    """How many entries a perf_analyzer input-data JSON file holds (None for any other file)."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        data = _json(path)
    except InputError:
        return None
    return len(data["data"]) if is_perf_analyzer_json(data) else None


def check_validation_data(
    target: Target, path: Path | None, outputs: list[np.ndarray], rows: int | None = None, start: int = 0
) -> int:
    """Compare a request's outputs with the `validation_data` of a perf_analyzer input-data file, entry by
    entry (the entries that made the request's rows), as perf_analyzer validates answers.

    Floats agree within 1e-5 relative (1e-6 absolute), other datatypes exactly. Returns the number of
    values compared (0 when the file has no validation data); CheckFailed names the first differing output.
    """
    if path is None or perf_analyzer_entries(path) is None:
        return 0
    data = _json(Path(path))
    expected = data.get("validation_data")
    if not expected:
        return 0
    n = len(data["data"])
    used = rows if rows is not None else n
    compared = 0
    for i in range(used if target.batched else 1):
        entry = expected[((start + i) % n) % len(expected)] if isinstance(expected, list) else None
        if not isinstance(entry, dict):
            raise InputError(f"{path}: validation_data[{i}] is not an object keyed by output name")
        for t, out in zip(target.outputs, outputs):
            if t.name not in entry:
                continue
            datatype = getattr(t, "datatype", None)
            got = np.asarray(out[i] if target.batched else out).reshape(-1)  # out may be a list of rows
            dtype = t.dtype if isinstance(t, ServedTensor) else np.dtype(got.dtype)
            if datatype is None:
                from tritonclient.utils import np_to_triton_dtype

                datatype = np_to_triton_dtype(dtype)
            want = _decode_value(
                t, dtype, datatype, entry[t.name], (got.size,), f"{path}: validation_data[{i}].{t.name}"
            )
            if datatype == "BYTES" or dtype.kind not in "fV":
                same = got.shape == want.shape and bool(np.all(got == want))
            else:
                same = got.shape == want.shape and np.allclose(
                    got.astype(np.float64), want.astype(np.float64), rtol=1e-5, atol=1e-6
                )
            if not same:
                raise CheckFailed(
                    f"{target.triton_name}: output {t.name} of row {i} differs from {path}'s "
                    f"validation_data: got {np.array2string(got[:6], precision=6)}, expected "
                    f"{np.array2string(want[:6], precision=6)}"
                )
            compared += got.size
    return compared
