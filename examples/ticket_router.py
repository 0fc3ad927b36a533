"""Your own model through zeroserve: a support-ticket router (not a course model).

Two inputs of different dtypes: token ids (int64, a dynamic length, 0 = padding) and a float32
feature vector; two outputs: class logits (which queue) and a regression value (hours to resolve).

    python examples/ticket_router.py       # writes ticket_router.pt beside this file (a tiny checkpoint)
    zeroserve export ticket_router --model-file examples/ticket_router.py
    zeroserve deploy ticket_router --model-file examples/ticket_router.py
    zeroserve serve --detach
    zeroserve client check ticket_router --model-file examples/ticket_router.py
    zeroserve client perf ticket_router --model-file examples/ticket_router.py --concurrency 1,4
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from zeroserve.spec import ModelSpec, TensorSpec
from zeroserve.tasks import LOGITS, MULTICLASS, REGRESSION, VALUE

VOCAB, FEATURES, QUEUES = 500, 6, ("billing", "bug", "account", "other")


class TicketRouter(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16, padding_idx=0)
        self.body = nn.Sequential(nn.Linear(16 + FEATURES, 32), nn.ReLU())
        self.queue = nn.Linear(32, len(QUEUES))
        self.hours = nn.Linear(32, 1)

    def forward(self, tokens, features):
        mask = (tokens != 0).unsqueeze(-1).float()  # mean over the real tokens, padding left out
        text = (self.embed(tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        h = self.body(torch.cat([text, features], dim=1))
        return self.queue(h), self.hours(h)


def example_inputs(batch, rng, time):
    """Zero-padded token rows of mixed lengths up to `time`, and features in [0, 1]."""
    lengths = rng.integers(1, time + 1, batch)
    tokens = rng.integers(1, VOCAB, (batch, time)) * (np.arange(time) < lengths[:, None])
    return [tokens.astype(np.int64), rng.random((batch, FEATURES), dtype=np.float32)]


def zeroserve_models():
    return [
        ModelSpec(
            name="ticket_router",
            summary="token ids + features -> queue logits, hours to resolve",
            build=TicketRouter,
            checkpoint="ticket_router.pt",
            example_inputs=example_inputs,
            inputs=(TensorSpec("tokens__0", "int64", ("time",)), TensorSpec("features__1", "float32", (FEATURES,))),
            outputs=(
                TensorSpec("queue__0", "float32", (len(QUEUES),), kind=LOGITS),
                TensorSpec("hours__1", "float32", (1,), kind=VALUE),
            ),
            tasks=(MULTICLASS, REGRESSION),
            labels=QUEUES,
            seq_lengths=(1, 7, 40),
            max_batch_size=32,
        )
    ]


if __name__ == "__main__":
    torch.manual_seed(0)
    written = Path(__file__).with_name("ticket_router.pt")
    torch.save(TicketRouter().state_dict(), written)
    print(
        f"wrote {written} (seeded untrained weights); next: "
        f"zeroserve export ticket_router --model-file {Path(__file__)}"
    )
