import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app
from zeroserve.errors import InputError

runner = CliRunner()


def test_ten_course_models():
    assert list(registry.REGISTRY) == [
        "linear",
        "logistic",
        "wide_deep",
        "binary_mlp",
        "softmax_mnist",
        "cnn_mnist",
        "inception_mnist",
        "fashion_mlp",
        "hello_rnn",
        "name_gru",
    ]


@pytest.mark.parametrize("name", list(registry.REGISTRY))
def test_module_takes_its_specs_and_returns_its_outputs(name):
    spec = registry.get(name)
    model = spec.build().eval()
    inputs = spec.random_inputs(3, np.random.default_rng(0))
    for arr, t in zip(inputs, spec.inputs):
        assert arr.dtype == np.dtype(t.dtype)
    with torch.no_grad():
        out = model(*[torch.from_numpy(a) for a in inputs])
    time = max(spec.seq_lengths) if spec.seq_lengths else 1
    assert tuple(out.shape) == spec.outputs[0].shape(3, time=time)
    assert all(t.name.rsplit("__", 1)[1].isdigit() for t in (*spec.inputs, *spec.outputs))


def test_course_architectures():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731 - a one-line local helper
    assert count(registry.get("linear").build()) == 2
    assert registry.get("inception_mnist").build().fc.in_features == 1408
    gru = registry.get("name_gru").build().gru
    assert (gru.num_layers, gru.bidirectional, gru.hidden_size) == (2, True, 100)
    out = registry.get("cnn_mnist").build()(torch.rand(2, 1, 28, 28))
    assert torch.allclose(out.exp().sum(1), torch.ones(2))  # log_softmax, as lecture 10


def test_name_gru_export_module_matches_packed_eager_on_mixed_lengths():
    spec = registry.get("name_gru")
    model = spec.build().eval()
    exportable = spec.export_module(model).eval()
    tokens, lengths = spec.random_inputs(9, np.random.default_rng(1), time=19)
    with torch.no_grad():
        batched = exportable(torch.from_numpy(tokens), torch.from_numpy(lengths))
        for i in range(9):  # each row alone, unpadded, through the packed course model
            n = int(lengths[i])
            alone = model(torch.from_numpy(tokens[i : i + 1, :n]), torch.from_numpy(lengths[i : i + 1]))
            assert torch.allclose(batched[i], alone[0], atol=1e-6)


def test_unknown_model_is_an_input_error():
    with pytest.raises(InputError, match="unknown model 'nope'.*linear"):
        registry.get("nope")
    result = runner.invoke(app, ["train", "nope"])
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output


def test_models_json_lists_tensor_specs():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert models["name_gru"]["inputs"][1] == {
        "name": "lengths__1",
        "dtype": "int64",
        "shape": ["batch"],
        "wire_shape": ["batch", 1],
        "domain": "lengths of tokens__0",
    }
    assert models["cnn_mnist"]["outputs"][0] == {
        "name": "log_probs__0",
        "dtype": "float32",
        "shape": ["batch", 10],
        "wire_shape": ["batch", 10],
        "kind": "log_probs",
    }
    assert models["cnn_mnist"]["task"] == "multiclass" and models["cnn_mnist"]["primary_output"] == "log_probs__0"
    assert runner.invoke(app, ["models"]).exit_code == 0


def test_encoders_reject_what_the_models_cannot_read():
    gru, hello = registry.get("name_gru"), registry.get("hello_rnn")
    tokens, lengths = gru.encode("Adsit,Li", "text")
    assert tokens.shape == (2, 5) and lengths.tolist() == [5, 2] and tokens[1, 2:].sum() == 0
    assert gru.encode("Müller", "text")[0][0].tolist() == [ord(c) for c in "Muller"]
    with pytest.raises(InputError):
        hello.encode("hxllo", "text")
    with pytest.raises(InputError):
        gru.encode("  ,", "text")
    with pytest.raises(InputError, match="does not read text"):
        registry.get("cnn_mnist").encode("3", "text")
