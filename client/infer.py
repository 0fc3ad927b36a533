"""`zeroserve client infer`: turn a user's input into the model's tensors, send it, say what came back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zeroserve.client.connection import Client, batches
from zeroserve.client.target import Target, validate
from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec


def load_input_file(spec: ModelSpec, path: Path) -> list[np.ndarray]:
    """The model's input tensors from .npy (single-input models), .npz or .json (keyed by input name).

    A .json file may also be a bare list for a single-input model. Batch axis included.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    names = [t.name for t in spec.inputs]
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if len(names) != 1:
                raise InputError(f"{spec.name} takes {len(names)} inputs ({', '.join(names)}): "
                                 "give them in a .npz or .json file keyed by name")
            return [np.load(path, allow_pickle=False)]
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        elif suffix == ".json":
            data = json.loads(path.read_text())
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
        raise InputError(f"input file {path}: {spec.name} takes {', '.join(names)}"
                         + (f"; missing {', '.join(missing)}" if missing else "")
                         + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    try:
        return [np.asarray(data[n]) for n in names]
    except ValueError as exc:  # ragged JSON lists
        raise InputError(f"input file {path}: {exc}") from None


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
