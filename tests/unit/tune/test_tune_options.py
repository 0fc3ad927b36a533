"""tune's options declared once: defaults and bounds in one place, the command line derived from the fields."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from zeroserve.errors import InputError
from zeroserve.tune.options import Options


def _tune_options(*args: str):
    """The Options `zeroserve tune` would run with (the run itself stood in for)."""
    import zeroserve.tune.runner as runner
    from zeroserve.app.cli import app

    seen = {}

    def stand_in(spec, repository, opts, **kw):
        seen["opts"] = opts
        raise typer.Exit(0)

    original = runner.run_tune
    runner.run_tune = stand_in  # type: ignore[assignment]  # the command imports it from the module when it runs
    try:
        res = CliRunner().invoke(app, ["tune", "logistic", *args])
    finally:
        runner.run_tune = original
    return res, seen.get("opts")


def test_the_command_line_is_derived_from_the_fields_with_their_defaults():
    res, opts = _tune_options(
        "--latency-budget-ms", "5", "--preferred", "max", "--instances", "1,2", "--ports", "1,2,3"
    )
    assert opts is not None, res.output
    assert opts == Options(budget_ms=5.0, preferred=(True,), instances=(1, 2), ports=(1, 2, 3))
    assert (opts.max_minutes, opts.percentile, opts.max_concurrency, opts.window_s, opts.max_trials) == (
        60.0,
        99.0,
        64,
        1.0,
        6,
    )
    assert opts.as_json()["instances"] == [1, 2]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give --latency-budget-ms (the p99 latency"),
        (["--latency-budget-ms", "5", "--percentile", "100"], "--percentile: 100 must be < 100"),
        (["--latency-budget-ms", "5", "--max-trials", "2"], "--max-trials: 2 must be >= 3"),
        (["--latency-budget-ms", "5", "--search", "random"], "'random' is not one of quick, brute"),
        (["--latency-budget-ms", "5", "--ports", "1,2"], "give three ports"),
        (["--latency-budget-ms", "5", "--ports", "1,2,70000"], "70000 must be <= 65535"),
        (["--latency-budget-ms", "5", "--preferred", "min"], "'min' is not one of both, none, max"),
        (["--latency-budget-ms", "0"], "--latency-budget-ms: 0 must be > 0"),
        (["--latency-budget-ms", "5", "--instances", ","], "--instances: give at least one value"),
    ],
)
def test_bad_options_are_refused_once_with_their_spelling(args, says):
    res, opts = _tune_options(*args)
    assert res.exit_code == 2 and opts is None and says in res.output, res.output


def test_options_made_in_code_are_checked_the_same_way():
    with pytest.raises(InputError, match="--window"):
        Options(budget_ms=5.0, window_s=0)


def test_json_prints_the_tune_record_key_for_key_with_its_report_files(tmp_path):
    """`tune --json` on 53e25ec's record (the run stood in for): the record as it was, `report` added, saved."""
    import json
    from pathlib import Path

    import zeroserve.tune.runner as runner
    from zeroserve.app.cli import app
    from zeroserve.records.tune import TuneRecord

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec" / "tune_report.json"
    original = runner.run_tune
    runner.run_tune = lambda *a, **kw: TuneRecord.load(fixture)  # type: ignore[assignment]  # imported when it runs
    try:
        args = ["tune", "softmax_mnist", "--latency-budget-ms", "200", "--report", str(tmp_path), "--json"]
        res = CliRunner().invoke(app, args)
    finally:
        runner.run_tune = original
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    written = json.loads(fixture.read_text())
    assert shown.pop("report") == {k: str(tmp_path / f"tune.{k}") for k in ("json", "png", "html")}
    assert shown.pop("schema_version") == 1 and written.pop("schema") == 1
    assert shown == {**written, "applied": None, "applied_engine_differs": None}  # 53e25ec had no engine check
    assert list(shown) == [*written, "applied_engine_differs"]  # in the order tune wrote it
    assert TuneRecord.load(tmp_path / "tune.json").report is None  # the file is the record, without --json's block
