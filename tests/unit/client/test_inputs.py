"""Input parsing and request building: images, text, files, validation, wire shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zeroserve import registry
from zeroserve.client import connection, infer, input_files
from zeroserve.client import values as client_values
from zeroserve.errors import InputError

CNN, GRU, HELLO, LINEAR = (registry.get(n) for n in ("cnn_mnist", "name_gru", "hello_rnn", "linear"))


def _png(path, size, value, mode="L"):
    from PIL import Image

    Image.new(mode, size, value).save(path)
    return path


def test_image_png_becomes_one_28x28_grayscale_tensor_in_unit_range(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (56, 84), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 28, 84))  # left half white
    path = tmp_path / "digit.png"
    img.save(path)
    (x,) = infer.image_inputs(CNN, path)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x[0, 0, :, :10].mean() == pytest.approx(1.0) and x[0, 0, :, 18:].mean() == pytest.approx(0.0)
    (inv,) = infer.image_inputs(CNN, path, invert=True)
    assert np.allclose(inv, 1.0 - x)


def test_image_gray_level_maps_to_its_fraction(tmp_path):
    (x,) = infer.image_inputs(CNN, _png(tmp_path / "g.png", (28, 28), 51))
    assert np.allclose(x, 51 / 255.0)


def test_image_errors_are_input_errors(tmp_path):
    bad = tmp_path / "not.png"
    bad.write_text("hello")
    with pytest.raises(InputError, match="cannot read image"):
        infer.image_inputs(CNN, bad)
    with pytest.raises(InputError, match="not found"):
        infer.image_inputs(CNN, tmp_path / "missing.png")
    with pytest.raises(InputError, match="image models"):
        infer.image_inputs(LINEAR, _png(tmp_path / "g.png", (28, 28), 0))


def test_text_for_name_gru_encodes_names_with_lengths():
    tokens, lengths = infer.text_inputs(GRU, "Kim,Nakamura")
    assert tokens.dtype == np.int64 and lengths.dtype == np.int64
    assert tokens.shape == (2, 8) and lengths.tolist() == [3, 8]
    assert "".join(map(chr, tokens[0, :3])) == "Kim" and tokens[0, 3:].tolist() == [0] * 5


def test_text_for_hello_rnn_is_one_hot():
    (x,) = infer.text_inputs(HELLO, "hihell")
    assert x.shape == (1, 6, 5) and x.dtype == np.float32
    assert x.sum(-1).tolist() == [[1.0] * 6]
    assert [HELLO.labels[i] for i in x[0].argmax(-1)] == list("hihell")
    with pytest.raises(InputError, match="h, i, e, l, o|hielo"):
        infer.text_inputs(HELLO, "xyz")
    with pytest.raises(InputError, match="does not read text"):
        infer.text_inputs(CNN, "3")


def test_hello_rnn_description_decodes_text():
    logits = np.eye(5, dtype=np.float32)[[1, 0, 2, 3, 3, 4]][None]  # i h e l l o
    assert HELLO.describe(logits) == [{"text": "ihello"}]


def test_input_files_npy_npz_json(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 1, 28, 28), np.float32))
    (x,) = input_files.load_input_file(CNN, tmp_path / "x.npy")
    assert x.shape == (2, 1, 28, 28)
    np.savez(tmp_path / "n.npz", tokens__0=np.ones((1, 4), np.int64), lengths__1=np.array([4]))
    assert [a.shape for a in input_files.load_input_file(GRU, tmp_path / "n.npz")] == [(1, 4), (1,)]
    (tmp_path / "l.json").write_text(json.dumps({"x__0": [[1.0], [2.0]]}))
    (x,) = input_files.load_input_file(LINEAR, tmp_path / "l.json")
    assert x.tolist() == [[1.0], [2.0]]
    (tmp_path / "bare.json").write_text("[[3.0]]")
    assert input_files.load_input_file(LINEAR, tmp_path / "bare.json")[0].tolist() == [[3.0]]


def test_input_file_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.int64))
    with pytest.raises(InputError, match="takes 2 inputs"):
        input_files.load_input_file(GRU, tmp_path / "x.npy")
    (tmp_path / "j.json").write_text(json.dumps({"tokens__0": [[1]]}))
    with pytest.raises(InputError, match="missing lengths__1"):
        input_files.load_input_file(GRU, tmp_path / "j.json")
    (tmp_path / "t.txt").write_text("1")
    with pytest.raises(InputError, match="use .npy"):
        input_files.load_input_file(LINEAR, tmp_path / "t.txt")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        input_files.load_input_file(LINEAR, tmp_path / "broken.json")
    with pytest.raises(InputError, match="not found: nope.npy$"):
        input_files.load_input_file(LINEAR, Path("nope.npy"))
    with pytest.raises(InputError, match=r"not found: random \(for generated data: `client infer --generate random`"):
        input_files.load_input_file(LINEAR, Path("random"))  # perf's --input mode given to infer's --input


def test_validate_inputs_checks_shapes_and_dtypes():
    ok = client_values.validate_inputs(LINEAR, [np.array([[1], [2]])])  # ints widen to float32
    assert ok[0].dtype == np.float32
    with pytest.raises(InputError, match=r"shape \(batch, 1, 28, 28\)"):
        client_values.validate_inputs(CNN, [np.zeros((1, 28, 28), np.float32)])
    with pytest.raises(InputError, match=r"shape \(batch, 1, 28, 28\)"):
        client_values.validate_inputs(CNN, [np.zeros((1, 1, 27, 28), np.float32)])
    with pytest.raises(InputError, match="float32 but name_gru takes int64.*--cast"):
        client_values.validate_inputs(GRU, [np.full((1, 3), 0.5, np.float32), np.array([3])])
    with pytest.raises(InputError, match="disagree on the batch"):
        client_values.validate_inputs(GRU, [np.zeros((2, 3), np.int64), np.array([3])])
    with pytest.raises(InputError, match="takes 2 input"):
        client_values.validate_inputs(GRU, [np.zeros((2, 3), np.int64)])
    # a per-sample scalar may come in its wire shape [batch, 1]
    tokens, lengths = client_values.validate_inputs(GRU, [np.ones((2, 3), np.int64), np.array([[3], [2]])])
    assert lengths.shape == (2,)


@pytest.mark.parametrize(
    "values, dtype, exact",
    [
        ([0.1, 0.25, 1e-3, 3.0], np.float32, True),  # JSON numbers float32 prints the same
        ([2**24, -(2**24), 2**30], np.float32, True),  # integers float32 holds exactly
        ([3.0, -2.0], np.int64, True),  # integral floats
        ([True, False], np.float32, True),
        ([0.123456789], np.float32, False),  # float64 precision float32 loses
        ([2**24 + 1], np.float32, False),  # beyond float32's exact integers
        ([2**63 - 1], np.float32, False),
        ([1e300], np.float32, False),  # would become infinity
        ([3.5], np.int64, False),  # a fraction
        ([2**40], np.int32, False),  # overflow
        ([-1], np.uint64, False),  # would wrap around
    ],
)
def test_convert_input_accepts_exactly_what_converts_exactly(values, dtype, exact):
    a = np.array(values)
    if exact:
        out = client_values.convert_input("x__0", a, dtype)
        assert out.dtype == dtype and np.allclose(out.astype(np.float64), a.astype(np.float64), rtol=1e-7, atol=0)
    else:
        with pytest.raises(InputError, match=rf"input x__0 is {a.dtype} but the model takes {np.dtype(dtype)}.*--cast"):
            client_values.convert_input("x__0", a, dtype)
        assert client_values.convert_input("x__0", a, dtype, cast=True).dtype == dtype


def test_cast_truncates_and_saturates_and_never_makes_nan_an_integer():
    got = client_values.convert_input("x", np.array([3.7, -3.7, 1e30, -1e30]), np.int32, cast=True)
    assert got.tolist() == [3, -3, 2**31 - 1, -(2**31)]
    assert client_values.convert_input("x", np.array([-1, 2**40]), np.uint32, cast=True).tolist() == [0, 2**32 - 1]
    with pytest.raises(InputError, match="NaN or infinity cannot be sent as int64"):
        client_values.convert_input("x", np.array([np.nan]), np.int64, cast=True)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_requests_carry_wire_shapes(protocol):
    module = connection.tritonclient_module(protocol)
    tokens, lengths = GRU.encode("Ann,Bo", "text")
    inputs, outputs = connection.build_request(module, GRU, [tokens, lengths])
    assert [(i.name(), i.shape(), i.datatype()) for i in inputs] == [
        ("tokens__0", [2, 3], "INT64"),
        ("lengths__1", [2, 1], "INT64"),
    ]  # scalar per sample -> [batch, 1]
    assert [o.name() for o in outputs] == ["logits__0"]
    (img,) = connection.build_request(module, CNN, [np.zeros((3, 1, 28, 28), np.float32)])[0]
    assert img.shape() == [3, 1, 28, 28] and img.datatype() == "FP32"


def test_to_wire_and_back():
    tokens, lengths = GRU.encode("Ann,Bo", "text")
    wire = client_values.to_wire(GRU, [tokens, lengths])
    assert wire[1].shape == (2, 1)
    back = client_values.from_wire(GRU, wire)
    assert back[1].shape == (2,) and back[1].tolist() == [3, 2]


def test_batches_cover_all_rows():
    slices = connection.batches(130, 64)
    assert [(s.start, s.stop) for s in slices] == [(0, 64), (64, 128), (128, 130)]
