"""Every command's --help reads as prose at any width: the docstring's own line breaks are not kept."""
from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from zeroserve.cli import app
from zeroserve.cliutil import reflow

COMMANDS = [["train"], ["export"], ["deploy"], ["serve"], ["status"], ["stop"], ["tune"], ["data", "fetch"],
            ["client", "infer"], ["client", "check"], ["client", "perf"]]


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
