"""A model file written against the API users had before the code moved (main 53e25ec) still loads and trains.

Unit tier: a tiny regression model; the import paths it uses are the ones issue 27 keeps.
"""

from __future__ import annotations

import json
import textwrap

from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app

OLD_API_MODEL_FILE = '''
    """A user's model file as written for zeroserve at 53e25ec: every import from the kept paths."""
    import numpy as np
    from torch import nn

    from zeroserve.domains import NORMAL, Unit
    from zeroserve.parity import Tolerance
    from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec, TrainDefaults
    from zeroserve.tasks import REGRESSION, VALUE


    def load(data_dir):
        rng = np.random.default_rng(0)
        x = rng.random((64, 3), dtype=np.float32)
        y = (x @ np.array([[1.0], [2.0], [3.0]], np.float32)).astype(np.float32)
        return Split([x[:48]], y[:48], [x[48:]], y[48:], source="generated", rule="first 48 train")


    def zeroserve_models():
        return [
            ModelSpec(
                name="old_api_regressor",
                lesson="a user's own",
                build=lambda: nn.Linear(3, 1),
                inputs=(TensorSpec("x__0", "float32", (3,), domain=Unit()),),
                outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
                tasks=(REGRESSION,),
                data=DataSource("three generated features", load=load),
                train=TrainDefaults(epochs=2, lr=0.05, batch_size=16),
                tolerance=Tolerance(atol=1e-4, rtol=1e-4),
            )
        ]
'''


def test_a_model_file_written_against_the_old_api_lists_and_trains(tmp_path):
    model_file = tmp_path / "old_api.py"
    model_file.write_text(textwrap.dedent(OLD_API_MODEL_FILE))
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--json", "--model-file", str(model_file)])
    assert listed.exit_code == 0, listed.output
    mine = {m["name"]: m for m in json.loads(listed.stdout)}["old_api_regressor"]
    assert mine["inputs"][0]["shape"] == ["batch", 3] and mine["origin"] == str(model_file)

    trained = runner.invoke(
        app,
        ["train", "old_api_regressor", "--model-file", str(model_file), "--artifacts", str(tmp_path / "a"), "--json"],
    )
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "a" / "old_api_regressor" / "checkpoint.pt").is_file()
    assert registry.get("old_api_regressor", [model_file]).name == "old_api_regressor"
