"""What the CLI prints: --help reads as prose at any width; --json and the records are strict JSON."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from zeroserve.app.cli import app
from zeroserve.app.cliutil import reflow

COMMANDS = [
    ["train"],
    ["export"],
    ["deploy"],
    ["serve"],
    ["status"],
    ["stop"],
    ["tune"],
    ["data", "fetch"],
    ["client", "infer"],
    ["client", "check"],
    ["client", "perf"],
]


def test_reflow_joins_lines_and_keeps_paragraphs_and_list_items():
    text = """First line
    goes on.

    Second paragraph
    wraps here.
    - an item
      continued
    - another"""
    assert reflow(text) == "First line goes on.\n\nSecond paragraph wraps here.\n- an item continued\n- another"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_paragraphs_wrap_at_the_terminal_width(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    # at 250 columns no prose line of the description may end short because of a docstring line break:
    # every description line before the option panels that is followed by another prose line is long
    body = []
    for line in lines[2:]:
        if line.startswith("╭"):
            break
        body.append(line)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", "\n".join(body)) if p.strip()]
    for paragraph in paragraphs:
        plines = [p for p in paragraph.splitlines() if not p.lstrip().startswith(("-", "*"))]
        for line in plines[:-1]:
            assert len(line) > 150, f"{' '.join(command)} --help broke a paragraph early: {line!r}"


def test_json_output_is_strict_json_with_nonfinite_values_named():
    import json

    import numpy as np

    from zeroserve.records import dumps

    text = dumps({"x": float("nan"), "y": np.array([1.5, np.inf, -np.inf], dtype=np.float32), "n": np.int64(3)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "x": "NaN",
        "y": [1.5, "Infinity", "-Infinity"],
        "n": 3,
    }


def test_a_record_with_nonfinite_values_reads_back_as_written(tmp_path):
    import math

    from zeroserve.records import read_json, write_json

    write_json(tmp_path / "r.json", {"loss": [0.5, float("nan")], "max_abs": float("inf"), "name": "x"})
    back = read_json(tmp_path / "r.json")
    assert back["loss"][0] == 0.5 and math.isnan(back["loss"][1]) and back["max_abs"] == math.inf
    assert back["name"] == "x"
