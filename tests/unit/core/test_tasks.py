"""Task objects and declared output kinds: the loss each task picks, its metric, its descriptions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from zeroserve import registry
from zeroserve import tasks as T
from zeroserve.errors import InputError
from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec, TrainDefaults


@pytest.mark.parametrize(
    "name,loss",
    [
        ("linear", "MSELoss"),
        ("logistic", "BCELoss"),
        ("wide_deep", "BCELoss"),
        ("binary_mlp", "BCELoss"),
        ("softmax_mnist", "CrossEntropyLoss"),
        ("cnn_mnist", "NLLLoss"),
        ("inception_mnist", "NLLLoss"),
        ("fashion_mlp", "CrossEntropyLoss"),
        ("hello_rnn", "CrossEntropyLoss per step"),
        ("name_gru", "CrossEntropyLoss"),
    ],
)
def test_each_course_model_trains_with_the_course_loss(name, loss):
    criterion = registry.get(name).loss()
    assert getattr(criterion, "label", type(criterion).__name__) == loss


@pytest.mark.parametrize(
    "task,kind,loss",
    [
        (T.REGRESSION, T.VALUE, nn.MSELoss),
        (T.BINARY, T.PROBS, nn.BCELoss),
        (T.BINARY, T.LOGITS, nn.BCEWithLogitsLoss),
        (T.MULTICLASS, T.LOGITS, nn.CrossEntropyLoss),
        (T.MULTICLASS, T.LOG_PROBS, nn.NLLLoss),
        (T.MULTICLASS, T.PROBS, T.ProbsNLLLoss),
    ],
)
def test_the_loss_follows_the_declared_kind_not_the_tensor_name(task, kind, loss):
    assert isinstance(task.loss(kind), loss)


def test_every_multiclass_kind_gives_the_same_loss_on_the_same_scores():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    want = nn.CrossEntropyLoss()(logits, y)
    assert torch.allclose(T.MULTICLASS.loss(T.LOG_PROBS)(torch.log_softmax(logits, 1), y), want)
    assert torch.allclose(T.MULTICLASS.loss(T.PROBS)(torch.softmax(logits, 1), y), want, atol=1e-6)
    steps = T.SEQUENCE.loss(T.SEQUENCE_LOGITS)(logits.reshape(2, 3, 4), y.reshape(2, 3))
    assert torch.allclose(steps, want)


def _probs_spec(**changes) -> ModelSpec:
    """A softmax-probabilities classifier of the kind the course never had: output named probs__0."""

    class SoftmaxNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), dim=1)

    def load(_):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 600)
        x = (np.eye(3)[y][:, :2] * 4 + rng.normal(0, 0.3, (600, 2))).astype(np.float32)
        return Split([x[:500]], y[:500], [x[500:]], y[500:], source="test blobs", rule="first 500 / last 100")

    spec = ModelSpec(
        name="probs_net",
        lesson="test",
        summary="softmax probabilities",
        build=SoftmaxNet,
        data=DataSource("test blobs", (), load),
        inputs=(TensorSpec("x__0", "float32", (2,)),),
        outputs=(TensorSpec("probs__0", "float32", (3,), kind=T.PROBS),),
        tasks=T.MULTICLASS,
        train=TrainDefaults(epochs=30, lr=0.05, batch_size=50),
        bar=0.9,
    )
    return dataclasses.replace(spec, **changes)


def test_a_probabilities_output_trains_with_nll_of_its_log(tmp_path):
    from zeroserve.train import train_model

    rec = train_model(_probs_spec(), tmp_path, tmp_path, device="cpu")
    assert rec.hyperparameters is not None and rec.hyperparameters.loss == "ProbsNLLLoss"
    assert rec.status == "PASS" and rec.metric.value >= 0.9, rec.metric


def test_a_spec_refuses_outputs_its_tasks_cannot_read():
    with pytest.raises(InputError, match="regression task reads value"):
        _probs_spec(tasks=T.REGRESSION)
    with pytest.raises(InputError, match="declares no kind"):
        _probs_spec(outputs=(TensorSpec("probs__0", "float32", (3,)),))
    with pytest.raises(InputError, match="one per output"):
        _probs_spec(tasks=(T.MULTICLASS, T.MULTICLASS))
    with pytest.raises(InputError, match="primary output 'nope'"):
        _probs_spec(primary="nope")


def test_metrics_and_their_direction():
    assert T.REGRESSION.score(T.VALUE, np.array([[7.9]]), np.array([[8.0]])) == pytest.approx(0.1)
    assert not T.REGRESSION.higher_is_better and T.REGRESSION.passes(0.05, 0.1)
    assert T.BINARY.score(T.LOGITS, np.array([[-1.0], [2.0]]), np.array([[0.0], [1.0]])) == 1.0
    assert T.BINARY.score(T.PROBS, np.array([[0.2], [0.7]]), np.array([[1.0], [1.0]])) == 0.5
    assert T.SEQUENCE.score(T.SEQUENCE_LOGITS, np.eye(3)[[[0, 1], [2, 2]]], np.array([[0, 1], [2, 1]])) == 0.5


def test_descriptions_read_the_declared_kind():
    assert T.BINARY.describe(T.LOGITS, np.array([0.0]), ("no", "yes")) == {"label": "yes", "probability": 0.5}
    logits = np.array([0.0, 2.0, 0.0])
    from_logits = T.MULTICLASS.describe(T.LOGITS, logits, ("a", "b", "c"))
    from_log_probs = T.MULTICLASS.describe(T.LOG_PROBS, np.log(T.LOGITS.probabilities(logits)), ("a", "b", "c"))
    assert from_logits["label"] == from_log_probs["label"] == "b"
    assert from_logits["probability"] == pytest.approx(from_log_probs["probability"])
    hello = registry.get("hello_rnn")
    assert hello.describe(np.eye(5, dtype=np.float32)[[1, 0, 2, 3, 3, 4]][None]) == [{"text": "ihello"}]
    assert hello.describe_target(np.array([1, 0, 2, 3, 3, 4])) == "ihello"


def test_domains_give_valid_random_and_safe_values():
    gru = registry.get("name_gru")
    tokens, lengths = gru.random_inputs(16, np.random.default_rng(3), time=7)
    assert lengths.min() >= 1 and lengths.max() == 7
    assert all(tokens[i, lengths[i] :].sum() == 0 and tokens[i, : lengths[i]].min() >= 1 for i in range(16))
    safe_tokens, safe_lengths = gru.safe_inputs(2, time=3)
    assert safe_tokens.tolist() == [[0, 0, 0]] * 2 and safe_lengths.tolist() == [1, 1]
    (image,) = registry.get("cnn_mnist").random_inputs(4, np.random.default_rng(0))
    assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 1
    (chars,) = registry.get("hello_rnn").random_inputs(2, np.random.default_rng(0), time=4)
    assert chars.sum(-1).tolist() == [[1.0] * 4] * 2


def test_describe_summarises_multi_element_outputs_and_spells_word_labels_apart():
    import numpy as np

    from zeroserve.tasks import BINARY, PROBS, REGRESSION, SEQUENCE, SEQUENCE_LOG_PROBS, VALUE

    image = np.arange(256, dtype=np.float32).reshape(1, 16, 16) / 255
    described = REGRESSION.describe(VALUE, image, ())
    assert described["shape"] == [1, 16, 16] and (described["min"], described["max"]) == (0.0, 1.0)
    assert described["mean"] == pytest.approx(0.5, abs=1e-3)
    assert REGRESSION.describe(VALUE, np.array([2.5]), ()) == {"value": 2.5}
    mask = np.array([[0.9, 0.1], [0.8, 0.2]], dtype=np.float32)
    assert BINARY.describe(PROBS, mask, ()) == {"shape": [2, 2], "positive": 2, "of": 4}
    steps = np.log(np.eye(3)[[0, 1, 2, 0]] * 0.98 + 0.01)
    assert SEQUENCE.describe(SEQUENCE_LOG_PROBS, steps, ("PAD", "NOUN", "VERB")) == {"text": "PAD NOUN VERB PAD"}
    assert SEQUENCE.describe(SEQUENCE_LOG_PROBS, steps, ("h", "i", "e")) == {"text": "hieh"}
