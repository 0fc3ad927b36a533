"""The perf record as a type: a record written by 53e25ec drives today's reports, CSVs and plan; bad ones say so."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from zeroserve.client.perf import pa_csv, report
from zeroserve.client.perf.levels import level_count, raise_for_outcome
from zeroserve.deploy import plan as P
from zeroserve.errors import InputError
from zeroserve.records.perf import PerfLevel, PerfRecord

OLD = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec" / "perf.json"


def test_a_perf_record_of_53e25ec_drives_the_reports_and_the_csvs(tmp_path):
    rec = PerfRecord.load(OLD)
    assert [lv.concurrency for lv in rec.levels] == [1, 2] and rec.measured_on is None  # before measured_on
    lv = rec.levels[0]
    assert isinstance(lv, PerfLevel) and lv.client.cpu_us > 0 and lv.totals.ok > 0
    assert level_count(lv, "requests") == lv.warmup.requests + lv.totals.requests + lv.drain.requests
    raise_for_outcome(rec)  # exit 0: nothing raised
    rows = list(csv.DictReader(io.StringIO(report.to_csv(rec))))
    assert [r["concurrency"] for r in rows] == ["1", "2"]
    assert pa_csv.to_csv(rec).splitlines()[0].startswith("Concurrency,Inferences/Second")
    paths = report.write_report(rec, tmp_path / "rep")
    assert "an engine and machine the record does not name" in paths["html"].read_text()
    again = json.loads(paths["json"].read_text())
    original = json.loads(OLD.read_text())
    assert again.pop("schema_version") == 1 and original.pop("schema") == 1 and again == original


def test_plan_reads_an_old_perf_record_as_an_unknown_machine():
    with pytest.raises(InputError, match="unknown machine"):
        P.plan("softmax_mnist", 100, 50, record_paths=[OLD])
    plan = P.plan("softmax_mnist", 100, 50, record_paths=[OLD], assume_same=True)
    assert plan["per_replica"]["concurrency"] in (1, 2)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda r: r["levels"][0].pop("totals"), "field levels.0.totals is missing"),
        (lambda r: r["outcome"].update(exit_code="bad"), "field outcome.exit_code: input should be a valid integer"),
        (lambda r: r.update(schema=2), "written by a newer zeroserve (perf record schema 2"),
    ],
)
def test_a_bad_perf_record_is_one_line_naming_the_field(tmp_path, edit, said):
    raw = json.loads(OLD.read_text())
    edit(raw)
    path = tmp_path / "perf.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError) as info:
        PerfRecord.load(path)
    assert said in str(info.value) and "\n" not in str(info.value)
