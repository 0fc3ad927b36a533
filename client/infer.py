"""`zeroserve client infer`: turn a user's input into the model's tensors, send it, say what came back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroserve.client.connection import Client, batches
from zeroserve.client.target import Target, validate
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


def sample_inputs(spec: ModelSpec, data_dir: Path, n: int) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The first `n` real held-out samples and their targets."""
    if n < 1:
        raise InputError("--sample must be at least 1")
    split = spec.load_data(Path(data_dir))
    return [a[:n] for a in split.test_inputs], None if split.test_target is None else split.test_target[:n]


def run_infer(target: Target, client: Client, arrays: list[np.ndarray], *, cast: bool = False,
              allow_nonfinite: bool = False) -> dict:
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
        "model": target.name, "triton_model": triton_name, "resolved": target.resolved,
        "protocol": client.protocol, "url": client.url, "batched": target.batched,
        "inputs": {t.name: list(a.shape) for t, a in zip(target.inputs, arrays)},
        "outputs": {t.name: o for t, o in zip(target.outputs, outputs)},
        "meaning": spec.describe(outputs[spec.primary_index]) if spec is not None else None,
    }
