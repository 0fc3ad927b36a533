"""The model registry: one entry per course model, read by every stage.

Each entry pairs a course module (`zeroserve.course_modules`) with its data source
(`zeroserve.data.course`), its tensor specs (`<name>__<index>` names, dtypes, dynamic axes, input
domains, declared output kinds), one task per output, `max_batch_size`, training defaults and the
bar a default run must reach. Nothing else in the code names a model. A user's own models come from
`zeroserve.user_models` and are resolved here beside the course's (`models`, `get`, `select`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zeroserve import course_modules as M
from zeroserve import user_models
from zeroserve.data import course as C
from zeroserve.domains import Image, Lengths
from zeroserve.errors import InputError
from zeroserve.spec import DataSource, ModelSpec, TensorSpec, TrainDefaults  # noqa: F401 (the spec API)
from zeroserve.tasks import BINARY, LOG_PROBS, LOGITS, MULTICLASS, PROBS, REGRESSION, SEQUENCE, SEQUENCE_LOGITS, VALUE

MNIST, FASHION = C.MNIST, C.FASHION  # the image data sources, by name
IMAGE = (TensorSpec("image__0", "float32", (1, 28, 28), Image(side=28)),)
DIGITS = tuple(str(i) for i in range(10))
FASHION_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

REGISTRY: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="linear",
            lesson="05 linear regression",
            summary="nn.Linear(1, 1) on x=[1,2,3], y=[2,4,6]",
            build=M.Linear,
            tasks=REGRESSION,
            bar=0.1,
            data=C.LINEAR,
            inputs=(TensorSpec("x__0", "float32", (1,)),),
            outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
            train=TrainDefaults(epochs=500, lr=0.05, batch_size=3, optimizer="sgd"),
        ),
        ModelSpec(
            name="logistic",
            lesson="06 logistic regression",
            summary="sigmoid(nn.Linear(1, 1)): hours studied -> pass",
            build=M.Logistic,
            tasks=BINARY,
            bar=1.0,
            labels=("fail", "pass"),
            data=C.LOGISTIC,
            inputs=(TensorSpec("hours__0", "float32", (1,)),),
            outputs=(TensorSpec("prob__0", "float32", (1,), kind=PROBS),),
            train=TrainDefaults(epochs=1000, lr=0.1, batch_size=4, optimizer="sgd"),
        ),
        ModelSpec(
            name="wide_deep",
            lesson="07 wide & deep",
            summary="8 -> 6 -> 4 -> 1, sigmoid activations, diabetes",
            build=M.WideDeep,
            tasks=BINARY,
            bar=0.70,
            labels=("no diabetes", "diabetes"),
            data=C.DIABETES,
            inputs=(TensorSpec("features__0", "float32", (8,)),),
            outputs=(TensorSpec("prob__0", "float32", (1,), kind=PROBS),),
            train=TrainDefaults(epochs=100, lr=0.01, batch_size=32),
        ),
        ModelSpec(
            name="binary_mlp",
            lesson="article: build a neural network",
            summary="5 -> 8 -> 4 -> 1, ReLU, sigmoid",
            build=M.BinaryMLP,
            tasks=BINARY,
            bar=0.90,
            labels=("class 0", "class 1"),
            data=C.SYNTHETIC,
            inputs=(TensorSpec("features__0", "float32", (5,)),),
            outputs=(TensorSpec("prob__0", "float32", (1,), kind=PROBS),),
            train=TrainDefaults(epochs=60, lr=0.01, batch_size=32),
        ),
        ModelSpec(
            name="softmax_mnist",
            lesson="09 softmax classifier",
            summary="784 -> 520 -> 320 -> 240 -> 120 -> 10 MLP",
            build=M.SoftmaxMNIST,
            tasks=MULTICLASS,
            bar=0.90,
            labels=DIGITS,
            data=MNIST,
            inputs=IMAGE,
            outputs=(TensorSpec("logits__0", "float32", (10,), kind=LOGITS),),
            train=TrainDefaults(epochs=10, lr=0.001, batch_size=64),
        ),
        ModelSpec(
            name="cnn_mnist",
            lesson="10 CNN",
            summary="conv 1->10 k5, conv 10->20 k5, max-pool 2, fc 320 -> 10",
            build=M.CNN,
            tasks=MULTICLASS,
            bar=0.95,
            labels=DIGITS,
            data=MNIST,
            inputs=IMAGE,
            outputs=(TensorSpec("log_probs__0", "float32", (10,), kind=LOG_PROBS),),
            train=TrainDefaults(epochs=10, lr=0.002, batch_size=64),
        ),
        ModelSpec(
            name="inception_mnist",
            lesson="11 advanced CNN (Inception)",
            summary="two InceptionA blocks, fc 1408 -> 10",
            build=M.Inception,
            tasks=MULTICLASS,
            bar=0.95,
            labels=DIGITS,
            data=MNIST,
            inputs=IMAGE,
            outputs=(TensorSpec("log_probs__0", "float32", (10,), kind=LOG_PROBS),),
            train=TrainDefaults(epochs=8, lr=0.002, batch_size=64),
        ),
        ModelSpec(
            name="fashion_mlp",
            lesson="study notes: Fashion-MNIST",
            summary="784 -> 256 -> 256 -> 10, ReLU",
            build=M.FashionMLP,
            tasks=MULTICLASS,
            bar=0.90,
            labels=FASHION_LABELS,
            data=FASHION,
            inputs=IMAGE,
            outputs=(TensorSpec("logits__0", "float32", (10,), kind=LOGITS),),
            train=TrainDefaults(epochs=10, lr=0.001, batch_size=64),
        ),
        ModelSpec(
            name="hello_rnn",
            lesson="12 RNN",
            summary="one-hot chars -> RNN(5, 5): 'hihell' -> 'ihello'",
            build=M.HelloRNN,
            tasks=SEQUENCE,
            bar=1.0,
            labels=C.HELLO_CHARS,
            data=C.HELLO,
            inputs=(TensorSpec("chars__0", "float32", ("time", 5), C.HELLO_ONEHOT),),
            outputs=(TensorSpec("logits__0", "float32", ("time", 5), kind=SEQUENCE_LOGITS),),
            train=TrainDefaults(epochs=300, lr=0.02, batch_size=1),
            seq_lengths=(1, 2, 5, 6),
        ),
        ModelSpec(
            name="name_gru",
            lesson="13 RNN classifier",
            summary="embedding(128, 100) -> 2-layer bi-GRU (packed) -> fc 18",
            build=M.NameGRU,
            tasks=MULTICLASS,
            bar=0.78,
            labels=C.COUNTRIES,
            data=C.NAMES,
            inputs=(
                TensorSpec("tokens__0", "int64", ("time",), C.NAME_TOKENS),
                TensorSpec("lengths__1", "int64", (), Lengths(of="tokens__0")),
            ),
            outputs=(TensorSpec("logits__0", "float32", (18,), kind=LOGITS),),
            train=TrainDefaults(epochs=6, lr=0.001, batch_size=256),
            seq_lengths=(1, 2, 5, C.NAME_MAX_LEN),
            export_module=M.NameGRUExport,
        ),
    )
}


def models(model_files: Sequence[str | Path] | None = None, on_error=None) -> dict[str, ModelSpec]:
    """The course models, then the user's own (entry points of `zeroserve.models`, then model files).

    Args:
        model_files: Python files defining `zeroserve_models()`; None reads `ZEROSERVE_MODEL_FILES`.
        on_error: `user_models.load`'s: given, a broken file is reported to it and the rest are returned.
    """
    return {**REGISTRY, **user_models.load(model_files, reserved=REGISTRY, on_error=on_error)}


def get(name: str, model_files: Sequence[str | Path] | None = None) -> ModelSpec:
    """The model called `name` (a course model or a user's own, checked), or InputError listing the known names."""
    known = models(model_files)
    try:
        spec = known[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}; known models: {', '.join(known)}"
            + ("" if len(known) > len(REGISTRY) else " (a model of your own: --model-file FILE)")
        ) from None
    return user_models.verify(spec)


def select(names: list[str], model_files: Sequence[str | Path] | None = None) -> tuple[list[ModelSpec], bool]:
    """Resolve `MODEL|all` arguments: (entries, explicit). Under `all` missing inputs are skips."""
    if not names or names == ["all"]:
        return [user_models.verify(s) for s in models(model_files).values()], False
    if "all" in names:
        raise InputError("'all' cannot be combined with model names")
    out: list[ModelSpec] = []
    for n in names:
        for part in n.split(","):
            if part and (spec := get(part, model_files)) not in out:
                out.append(spec)
    return out, True
