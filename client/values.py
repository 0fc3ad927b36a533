"""Input values against a model's tensors: exact dtype conversion (lossy only with --cast), NaN/Inf refused
unless allowed, shapes checked, and the graph <-> wire shapes (a per-sample scalar travels as [batch, 1]).

`client infer`, `client perf` and `client check` all send what these functions let through.
"""

from __future__ import annotations

import numpy as np

from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec, TensorSpec


def to_wire(spec: ModelSpec, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Graph-shaped arrays -> wire-shaped: a per-sample scalar `[batch]` travels as `[batch, 1]`."""
    return [np.ascontiguousarray(a.reshape(-1, 1) if t.reshaped else a) for t, a in zip(spec.inputs, arrays)]


def from_wire(spec: ModelSpec, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Wire-shaped arrays -> graph-shaped (the inverse of `to_wire`)."""
    return [a.reshape(-1) if t.reshaped else a for t, a in zip(spec.inputs, arrays)]


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flat indices of the values of `a` that its conversion `b` does not hold exactly."""
    src, want = a.dtype, b.dtype
    with np.errstate(all="ignore"):
        if want.kind in "iu" and src.kind in "iu":  # a round trip would hide a wrap-around (-1 -> uint -> -1)
            info = np.iinfo(want)
            bad = (a < max(info.min, np.iinfo(src).min)) | (a > min(info.max, np.iinfo(src).max))
        else:
            back = b.astype(src)
            bad = ~((back == a) | (np.isnan(a) & np.isnan(back)) if src.kind == "f" else back == a)
    idx = np.flatnonzero(bad)
    if want.kind == "f" and src.kind == "f" and idx.size:
        # A number written with fewer digits than float64 carries (JSON's 0.1) is kept when the narrower
        # float prints as the same number: 0.1 -> float32 0.1 is exact to what was written, 0.123456789 is not.
        flat_a, flat_b = a.reshape(-1), b.reshape(-1)
        kept = [
            i
            for i in idx
            if np.isfinite(flat_b[i])
            and float(np.format_float_positional(flat_b[i], unique=True, trim="-")) == flat_a[i]
        ]
        idx = np.setdiff1d(idx, kept)
    return idx


def convert_input(name: str, a, dtype, *, cast: bool = False, model: str = "the model") -> np.ndarray:
    """`a` as `dtype` when every value converts exactly, else InputError naming --cast (or, with `cast`, converted).

    Exact: the same dtype; a JSON number or float64 that the narrower float prints the same (0.1 as
    float32); integers the float holds exactly (every one within ±2^24 for float32); integral floats
    and integers within an integer type's range. With `cast`, floats to integers truncate toward zero
    and saturate at the type's limits, and floats round to the nearest the narrower type holds.
    """
    a = np.asarray(a)
    want = np.dtype(dtype)
    if a.dtype == want:
        return a
    if a.dtype.kind not in "biuf" or want.kind not in "biuf":
        raise InputError(f"input {name} holds {a.dtype} values, which {model}'s {want} input cannot take")
    with np.errstate(all="ignore"):
        b = a.astype(want)
    changed = _changed(a, b)
    if not changed.size:
        return b
    first = a.reshape(-1)[changed[0]]
    if not cast:
        raise InputError(
            f"input {name} is {a.dtype} but {model} takes {want}: {changed.size} of {a.size} values "
            f"would change (first: {str(first)} -> {str(b.reshape(-1)[changed[0]])}); convert the file to "
            f"{want} or pass --cast to convert anyway"
        )
    if want.kind in "iu" and a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(f"input {name}: NaN or infinity cannot be sent as {want}, even with --cast")
        info = np.iinfo(want)
        t = np.trunc(a)
        with np.errstate(all="ignore"):
            b = t.astype(want)
        b[t >= float(info.max)] = info.max  # float(info.max) rounds up: at or past it does not fit
        b[t <= float(info.min)] = info.min
    elif want.kind in "iu" and a.dtype.kind in "iu":
        info, src = np.iinfo(want), np.iinfo(a.dtype)
        b = np.clip(a, max(info.min, src.min), min(info.max, src.max)).astype(want)
    return b


def count_nonfinite(a: np.ndarray) -> int:
    """How many NaN or infinite values a float array holds (0 for other dtypes)."""
    a = np.asarray(a)
    return int(a.size - np.count_nonzero(np.isfinite(a))) if a.dtype.kind in "fc" else 0


def check_finite(name: str, a: np.ndarray, allow: bool = False) -> None:
    """InputError naming the input and its count of NaN/infinite values, unless `allow`."""
    n = count_nonfinite(a)
    if n and not allow:
        raise InputError(
            f"input {name} holds {n} non-finite value(s) (NaN or infinity) of {a.size}: a model "
            "answers them with a plausible-looking or NaN result; fix the input or pass "
            "--allow-nonfinite to send them"
        )


def _check_tensor(
    spec: ModelSpec, t: TensorSpec, a: np.ndarray, cast: bool = False, allow_nonfinite: bool = True
) -> np.ndarray:
    a = np.asarray(a)
    check_finite(t.name, a, allow_nonfinite)
    a = convert_input(t.name, a, t.dtype, cast=cast, model=spec.name)
    check_finite(t.name, a, allow_nonfinite)  # --cast may round a huge float64 to float32 infinity
    if t.reshaped and a.ndim == 2 and a.shape[1:] == (1,):
        a = a.reshape(-1)  # accept the wire shape [batch, 1] too
    shape_txt = "(" + ", ".join(map(str, ("batch", *t.dims))) + ")"  # not [..]: rich reads that as markup
    if a.ndim != 1 + len(t.dims):
        raise InputError(
            f"{spec.name}: input {t.name} must have shape {shape_txt} (batch axis included), got {tuple(a.shape)}"
        )
    for axis, d in enumerate(t.dims, start=1):
        if isinstance(d, int) and a.shape[axis] != d:
            raise InputError(f"{spec.name}: input {t.name} must have shape {shape_txt}, got {tuple(a.shape)}")
        if isinstance(d, str) and a.shape[axis] < 1:
            raise InputError(f"{spec.name}: input {t.name} has an empty {d} axis")
    return np.ascontiguousarray(a)


def validate_inputs(
    spec: ModelSpec, arrays: list[np.ndarray], *, cast: bool = False, allow_nonfinite: bool = False
) -> list[np.ndarray]:
    """Check count, dtype and shape against the spec before anything is sent; graph-shaped arrays out.

    Dtypes convert only exactly unless `cast` (`convert_input`); NaN and infinity are refused unless
    `allow_nonfinite`.
    """
    if len(arrays) != len(spec.inputs):
        raise InputError(
            f"{spec.name} takes {len(spec.inputs)} input(s) "
            f"({', '.join(t.name for t in spec.inputs)}), got {len(arrays)}"
        )
    out = [_check_tensor(spec, t, a, cast, allow_nonfinite) for t, a in zip(spec.inputs, arrays)]
    batches = {len(a) for a in out}
    if len(batches) != 1:
        raise InputError(f"{spec.name}: inputs disagree on the batch size: {[len(a) for a in out]}")
    if 0 in batches:
        raise InputError(f"{spec.name}: the input batch is empty")
    return out
