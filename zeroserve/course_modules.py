"""The course's `nn.Module`s, as the lectures write them (plus name_gru's export-friendly twin).

The registry (`zeroserve.registry`) pairs each with its data source and tensor specs.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


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
                gru.load_state_dict(
                    {
                        f"{w}_l0": getattr(g, f"{w}_l{k}{suffix}").detach().clone()
                        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    }
                )
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
