"""A new user's first hour through a real server: a word tagger of their own (examples in issue 25).

Its weights are a seeded checkpoint written here, its held-out rows come from its own data source;
the CLI exports, deploys and serves it (the embedded Triton on free ports), then `client infer`
takes held-out rows by count and by index, spells word labels apart, and sends perf_analyzer
entries of differing lengths one request per shape, answering in entry order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroserve.app.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

TAGGER = textwrap.dedent("""
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

    from zeroserve.domains import Tokens
    from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec
    from zeroserve.tasks import SEQUENCE, SEQUENCE_LOG_PROBS

    TAGS = ("PAD", "NOUN", "VERB")


    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.out = nn.Linear(8, len(TAGS))

        def forward(self, tokens):
            return torch.log_softmax(self.out(self.embed(tokens)), dim=-1)


    def held_out(data_dir):
        tokens = (np.arange(6 * 5).reshape(6, 5) % 19 + 1).astype(np.int64)  # row i starts with token 5i % 19 + 1
        return Split.held_out([tokens], (tokens % 3).astype(np.int64), source="six fixed sentences")


    def zeroserve_models():
        return [ModelSpec(
            name="tagger", build=Tagger, checkpoint="tagger.pt", labels=TAGS, tasks=SEQUENCE,
            inputs=(TensorSpec("tokens__0", "int64", ("time",), domain=Tokens(vocab=20)),),
            outputs=(TensorSpec("tags__0", "float32", ("time", len(TAGS)), kind=SEQUENCE_LOG_PROBS),),
            data=DataSource("six fixed sentences", load=held_out), seq_lengths=(1, 3, 7))]


    if __name__ == "__main__":
        torch.manual_seed(0)
        torch.save(Tagger().state_dict(), Path(__file__).with_name("tagger.pt"))
""")


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


def serve_tagger(folder: Path, start_server):
    """The tagger exported, deployed (onnx) and served; (folder, --model-file args, port args)."""
    model_file = folder / "tagger.py"
    model_file.write_text(TAGGER)
    subprocess.run([sys.executable, str(model_file)], check=True, timeout=120)
    artifacts, repository = folder / "artifacts", folder / "model_repository"
    own = ("--model-file", str(model_file))
    result = invoke("export", "tagger", *own, "--artifacts", str(artifacts), "--format", "onnx", "--json")
    assert result.exit_code == 0, result.output
    result = invoke(
        "deploy",
        "tagger",
        *own,
        "--artifacts",
        str(artifacts),
        "--repository",
        str(repository),
        "--format",
        "onnx",
        "--json",
    )
    assert result.exit_code == 0, result.output
    server = start_server(repository, ["tagger"])
    ports = ("--host", server.host, "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port))
    return folder, own, ports


def test_a_taggers_first_hour_through_a_real_server(tmp_path, start_server):
    tagger = serve_tagger(tmp_path, start_server)
    held_out_rows_by_count_and_by_index(tagger)
    word_labels_are_spelled_apart(tagger)
    perf_analyzer_entries_of_differing_lengths_answer_in_entry_order(tagger)


def held_out_rows_by_count_and_by_index(tagger):
    folder, own, ports = tagger
    first = json.loads(invoke("client", "infer", "tagger", *own, *ports, "--samples", "2", "--json").stdout)
    assert len(first["target"]) == 2 and len(first["meaning"]) == 2
    picked = invoke("client", "infer", "tagger", *own, *ports, "--row", "4", "--row", "0", "--json")
    assert picked.exit_code == 0, picked.output
    out = json.loads(picked.stdout)
    tokens_row = lambda i: [(5 * i + k) % 19 + 1 for k in range(5)]  # noqa: E731 - a one-line local helper
    assert out["target"] == [[t % 3 for t in tokens_row(4)], [t % 3 for t in tokens_row(0)]]
    assert out["meaning"][1] == first["meaning"][0]  # --row 0 is the first held-out row
    zero = invoke("client", "infer", "tagger", *own, *ports, "--samples", "0")
    assert zero.exit_code == 2 and "use --row 0" in zero.output and "Traceback" not in zero.output
    past = invoke("client", "infer", "tagger", *own, *ports, "--row", "6")
    assert past.exit_code == 2 and "has 6 rows" in past.output


def word_labels_are_spelled_apart(tagger):
    folder, own, ports = tagger
    out = json.loads(invoke("client", "infer", "tagger", *own, *ports, "--samples", "1", "--json").stdout)
    words = out["meaning"][0]["text"].split(" ")
    assert len(words) == 5 and set(words) <= {"PAD", "NOUN", "VERB"}


def perf_analyzer_entries_of_differing_lengths_answer_in_entry_order(tagger):
    folder, own, ports = tagger
    entries = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10], [11, 12, 13], [4, 5, 6, 7, 8, 9, 10]]
    path = folder / "mixed.json"
    path.write_text(json.dumps({"data": [{"tokens__0": {"content": e, "shape": [len(e)]}} for e in entries]}))
    result = invoke("client", "infer", "tagger", *own, *ports, "--input", str(path), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["requests"] == 3  # 7, then the two of length 3 as one batch, then 7
    assert [len(row) for row in out["outputs"]["tags__0"]] == [7, 3, 3, 7]
    singles = []
    for e in entries:
        one = folder / "one.json"
        one.write_text(json.dumps({"data": [{"tokens__0": {"content": e, "shape": [len(e)]}}]}))
        answer = json.loads(invoke("client", "infer", "tagger", *own, *ports, "--input", str(one), "--json").stdout)
        singles.append(answer["outputs"]["tags__0"][0])
    for got, alone in zip(out["outputs"]["tags__0"], singles):
        np.testing.assert_allclose(np.asarray(got), np.asarray(alone), atol=1e-5)  # its own entry's, in order
    table = invoke("client", "infer", "tagger", *own, *ports, "--input", str(path))
    assert table.exit_code == 0 and "Traceback" not in table.output
