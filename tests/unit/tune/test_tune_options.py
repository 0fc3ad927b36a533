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
