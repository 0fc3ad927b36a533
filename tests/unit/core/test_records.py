"""The typed records (zeroserve/records/): one loader that says what is wrong, atomic saves, the docs
generated from the types, and no stage opening a record file other than through its type."""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path

import pytest

from zeroserve.errors import InputError
from zeroserve.records import catalog
from zeroserve.records.base import Record

ROOT = Path(__file__).resolve().parents[3]


class Sample(Record):
    KIND = "sample record"
    VERSION = 2
    REMEDY = "run the sample stage again"
    model: str
    count: int = 0


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "r.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('{"model": "m", "count": 3', "is truncated"),
        ('{"model": "m", "co', "is truncated"),
        ("", "is empty"),
        ("{'model': 'm'}", "is not valid JSON"),
        ("[1, 2]", "holds a list, not a sample record"),
        (
            '{"schema_version": 3, "model": "m"}',
            "written by a newer zeroserve (sample record schema 3; this one reads up to 2)",
        ),
        ('{"schema_version": "two", "model": "m"}', "schema_version 'two' is not a version number"),
        ('{"count": 1}', "field model is missing"),
        ('{"model": "m", "count": "many"}', "field count: input should be a valid integer"),
        (b"\xff\xfe{}", "is not text"),
    ],
)
def test_a_bad_record_is_one_line_saying_what_and_what_to_do(tmp_path, content, said):
    path = _write(tmp_path, content)
    with pytest.raises(InputError) as err:
        Sample.load(path)
    message = str(err.value)
    assert said in message and str(path) in message
    assert "\n" not in message
    if "newer" not in said:
        assert message.endswith("run the sample stage again")


def test_a_missing_record_or_a_folder_says_so(tmp_path):
    with pytest.raises(InputError, match="sample record not found: .*; run the sample stage again"):
        Sample.load(tmp_path / "none.json")
    with pytest.raises(InputError, match="is a folder, not a file"):
        Sample.load(tmp_path)


def test_a_record_round_trips_what_it_was_given_and_keeps_what_it_does_not_know(tmp_path):
    path = _write(tmp_path, json.dumps({"schema": 1, "model": "m", "later": {"x": [1, "NaN"]}}))
    rec = Sample.load(path)  # an older record: `schema` (53e25ec's spelling), no `count` (absent stays absent)
    assert rec.model == "m" and rec.schema_version == 2
    rec.save(path)
    assert json.loads(path.read_text()) == {"model": "m", "later": {"x": [1, "NaN"]}, "schema_version": 2}
    assert not list(tmp_path.glob(".*tmp"))  # saved by a rename: nothing half-written left beside it


def test_the_record_tables_in_contracts_md_are_the_types(tmp_path):
    text = (ROOT / "docs" / "contracts.md").read_text()
    assert catalog.contracts_with(text) == text, "run `python -m zeroserve.records.catalog` to regenerate"
    for cls in catalog.RECORDS:
        assert f"`{cls.__module__}.{cls.__name__}`, schema_version {cls.VERSION}" in text


# ------------------------------------------------------------------ the bar: records only through their types

RECORD_FILES = {"train.json", "export.json", "export-failed.json", "manifest.json", "checkpoint.pt", "sample.npz"}
READERS = {"read_json", "write_json"}
# JSON that is not a record of ours, each with why it is read as plain JSON
NOT_RECORDS = {
    "zeroserve/data/cli.py": "the user's --checksums table",
    "zeroserve/runtimes/pt2.py": "AOTInductor's metadata inside a .pt2 package",
    "deploy/kserve_check.py": "KServe's CRD and a manifest to check (YAML/JSON of KServe's)",
    "serve/triton_model.py": "runs inside Triton's Python-backend stub, which cannot import zeroserve",
    "client/input_files.py": "the user's input files (perf_analyzer's input-data JSON)",
    "client/perf/wire.py": "Triton's HTTP answer",
    "serve/detach.py": "the detached supervisor's options, passed as JSON on its command line",
    "bench/client.py": "its own benchmark result (reports/bench-client.json), read by no stage",
}
# modules still reading or writing a record by hand: the list only shrinks (a stale entry fails)
NOT_YET: set[str] = set()


def _source_files() -> list[Path]:
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return sorted({f for folder in dirs.values() for f in (ROOT / folder).rglob("*.py") if "records" not in f.parts})


def _by_hand(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            base = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
            if name in READERS or (base == "json" and name in ("load", "loads")):
                found.append(f"line {node.lineno}: {base + '.' if base else ''}{name}")
        elif isinstance(node, ast.Constant) and node.value in RECORD_FILES:
            found.append(f"line {node.lineno}: spells {node.value!r} (records/layout.py's job)")
    return found


def test_stage_code_opens_records_only_through_their_types():
    offenders, stale = [], []
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in NOT_RECORDS:
            continue
        found = _by_hand(path)
        if found and rel not in NOT_YET:
            offenders.append(f"{rel}: " + "; ".join(found))
        if not found and rel in NOT_YET:
            stale.append(rel)
    assert not offenders, "read and write records through their types (zeroserve/records/):\n" + "\n".join(offenders)
    assert not stale, f"no longer reads records by hand: remove from NOT_YET: {stale}"


# ------------------------------------------------------------------ records written by main 53e25ec

FIXTURES = ROOT / "tests" / "fixtures" / "records_53e25ec"
OLD_RECORDS = {
    "train.json": "TrainRecord", "train_wide_deep.json": "TrainRecord",
    "export.json": "ExportRecord", "export_variant.json": "ExportRecord",
    "manifest.json": "Manifest", "manifest_tuned.json": "Manifest",
    "state_running.json": "ServerState", "state_running_restarted.json": "ServerState",
    "state_dead.json": "ServerState",
    "perf.json": "PerfRecord", "check.json": "CheckRecord",
    "tune.json": "TuneRecord", "tune_report.json": "TuneRecord", "tune_applied.json": "TuneRecord",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OLD_RECORDS))
def test_a_record_written_by_53e25ec_loads_and_saves_again_losing_nothing(tmp_path, name):
    cls = next(c for c in catalog.RECORDS if c.__name__ == OLD_RECORDS[name])
    rec = cls.load(FIXTURES / name)
    assert rec.schema_version == cls.VERSION
    rec.save(tmp_path / name)
    again = json.loads((tmp_path / name).read_text())
    original = json.loads((FIXTURES / name).read_text())
    original.pop("schema", None)
    assert again.pop("schema_version") == cls.VERSION
    assert again == original
    assert cls.load(tmp_path / name) == rec


def test_every_fixture_is_listed():
    assert {p.name for p in FIXTURES.glob("*.json")} == set(OLD_RECORDS)
