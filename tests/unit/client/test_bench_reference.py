"""`make bench`'s perf_analyzer reference: finding perf_analyzer and reading what it writes (a stand-in
script plays perf_analyzer here; the real one runs in `make bench`)."""

from __future__ import annotations

import stat

import pytest

from zeroserve.bench import reference as R


def _script(path, body: str):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_without_perf_analyzer_the_reference_says_why_it_is_skipped(monkeypatch, tmp_path):
    monkeypatch.delenv(R.ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    command, why = R.find_perf_analyzer()
    assert command is None and R.ENV in why and "PATH" in why
    monkeypatch.setenv(R.ENV, str(tmp_path / "missing"))
    command, why = R.find_perf_analyzer()
    assert command is None and "is not an executable file" in why
    fake = _script(tmp_path / "pa", "exit 0\n")
    monkeypatch.setenv(R.ENV, str(fake))
    assert R.find_perf_analyzer()[0] == [str(fake)]


def test_a_stable_level_is_read_from_perf_analyzers_csv(tmp_path):
    # writes the CSV named after -f, as perf_analyzer does
    fake = _script(
        tmp_path / "pa",
        'while [ "$1" != "-f" ]; do shift; done\n'
        'printf "Concurrency,Inferences/Second,Client Send,Client Recv,p50 latency,p99 latency\\n'
        '1,2425.2,2,0,357,1918\\n" > "$2"\n',
    )
    fig = R.run_perf_analyzer([str(fake)], "m", "127.0.0.1:1", "grpc", 1, tmp_path)
    assert fig["stable"] and fig["throughput"] == pytest.approx(2425.2) and fig["p50_ms"] == pytest.approx(0.357)


def test_an_unstable_level_is_read_from_its_last_three_passes(tmp_path):
    passes = "".join(
        f"  Pass [{i}] throughput: {t} infer/sec. p50 latency: {p} usec\\n"
        for i, (t, p) in enumerate([(100, 900), (1000, 300), (2000, 400), (3000, 500)], 1)
    )
    fake = _script(tmp_path / "pa", f'printf "{passes}Failed to obtain stable measurement.\\n"\nexit 1\n')
    fig = R.run_perf_analyzer([str(fake)], "m", "127.0.0.1:1", "http", 16, tmp_path)
    assert fig == {"throughput": pytest.approx(2000.0), "p50_ms": pytest.approx(0.4), "stable": False}
    broken = _script(tmp_path / "broken", 'echo "error: cannot connect" >&2\nexit 1\n')
    assert R.run_perf_analyzer([str(broken)], "m", "127.0.0.1:1", "http", 1, tmp_path) == {
        "error": "error: cannot connect"
    }
