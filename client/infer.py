"""`zeroserve client infer`: turn a user's input into the model's tensors, send it, say what came back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroserve.client.connection import Client, batches
from zeroserve.client.model import Target, validate
from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec


def image_inputs(spec: ModelSpec, path: Path, invert: bool = False) -> list[np.ndarray]:
    """A picture -> the model's image input, through its domain (grayscale, resized, in [0, 1]).

    Args:
        invert: for dark-on-light drawings; MNIST digits are light on a dark background.
    """
    if not any(t.domain.reads == "image" for t in spec.inputs):
        raise InputError(f"--image is for the image models; {spec.name} does not take an image")
    return spec.encode((Path(path), invert), "image")


def text_inputs(spec: ModelSpec, text: str) -> list[np.ndarray]:
    """Human text -> tensors through the inputs' domains (names, comma-separated, for name_gru;
    characters of h, i, e, l, o for hello_rnn)."""
    if not any(t.domain.reads == "text" for t in spec.inputs):
        raise InputError(f"--text is for the models that read text; {spec.name} does not read text")
    return spec.encode(text, "text")


def check_sample_choice(n: int | None, rows: list[int] | None) -> None:
    """InputError unless exactly one of a count `n` (at least 1) and row indices (each at least 0) is given."""
    if (n is None) == (not rows):
        raise InputError(
            "give --samples N (how many held-out rows, from the first) or --row I (one row by its "
            "0-based index; repeat it for several), not both"
        )
    if n is not None and n < 1:
        raise InputError(f"--samples {n}: it is a count (at least 1); for the held-out row at index {n} use --row {n}")
    if rows and min(rows) < 0:
        raise InputError(f"--row {min(rows)}: a row index is 0 or more")


def sample_inputs(
    spec: ModelSpec, data_dir: Path, n: int | None = None, rows: list[int] | None = None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Real held-out samples and their targets: the first `n` (`--samples`, a count), or the rows at the
    0-based indices `rows` (`--row`), in the order given."""
    check_sample_choice(n, rows)
    split = spec.load_data(Path(data_dir))
    total = len(split.test_inputs[0])
    if rows:
        bad = [r for r in rows if not 0 <= r < total]
        if bad:
            raise InputError(f"--row {bad[0]}: the held-out set has {total} rows (indices 0 to {total - 1})")
        index = np.asarray(rows)
    else:
        index = np.arange(min(n or 1, total))
    return [a[index] for a in split.test_inputs], None if split.test_target is None else split.test_target[index]


def run_infer(
    target: Target, client: Client, arrays: list[np.ndarray], *, cast: bool = False, allow_nonfinite: bool = False
) -> dict:
    """Validate, send in batches of at most max_batch_size, and describe the answer.

    Args:
        cast: convert inputs whose values the model's dtypes do not hold exactly (else InputError).
        allow_nonfinite: send NaN and infinity (else InputError naming the input and their count).

    Returns:
        {"model", "triton_model", "resolved", "protocol", "url", "batched", "inputs": {name: shape},
        "outputs": {name: array}, "meaning": the spec's rows for a registry model, else None (raw outputs)}.
    """
    arrays = validate(target, arrays, cast=cast, allow_nonfinite=allow_nonfinite)
    triton_name = target.triton_name
    client.require_model(triton_name)
    if target.batched:
        limit = min(target.max_batch_size, client.max_batch_size(triton_name) or target.max_batch_size)
        chunks = [client.infer(target, triton_name, [a[s] for a in arrays]) for s in batches(len(arrays[0]), limit)]
        outputs = [np.concatenate([c[i] for c in chunks]) for i in range(len(target.outputs))]
    else:
        outputs = client.infer(target, triton_name, arrays)
    spec = target.spec
    return {
        "model": target.name,
        "triton_model": triton_name,
        "resolved": target.resolved,
        "protocol": client.protocol,
        "url": client.url,
        "batched": target.batched,
        "inputs": {t.name: list(a.shape) for t, a in zip(target.inputs, arrays)},
        "outputs": {t.name: o for t, o in zip(target.outputs, outputs)},
        "meaning": spec.describe(outputs[spec.primary_index]) if spec is not None else None,
    }


def run_infer_requests(target: Target, client: Client, requests: list[list[np.ndarray]], **options) -> dict:
    """`run_infer` for each request in order (perf_analyzer entries of differing shapes), merged into one answer.

    Returns:
        As `run_infer`, with "requests" (how many were sent), "inputs" {name: [shape per request]} and, where
        the requests' outputs differ in shape, "outputs" {name: [one array per row]} (rows in entry order).
    """
    if len(requests) == 1:
        return run_infer(target, client, requests[0], **options)
    answers = [run_infer(target, client, arrays, **options) for arrays in requests]
    merged = dict(answers[0])
    merged["requests"] = len(answers)
    merged["inputs"] = {name: [a["inputs"][name] for a in answers] for name in answers[0]["inputs"]}
    outputs = {}
    for name in answers[0]["outputs"]:
        parts = [np.asarray(a["outputs"][name]) for a in answers]
        same = len({p.shape[1:] for p in parts}) == 1
        outputs[name] = np.concatenate(parts) if same else [row for p in parts for row in p]
    merged["outputs"] = outputs
    merged["meaning"] = None if merged["meaning"] is None else [m for a in answers for m in a["meaning"]]
    return merged
