"""State files of servers started by zeroserve 53e25ec (no schema_version, fewer fields) stay readable by the new
`status` and `stop`, and a state file that cannot be read never breaks a reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zeroserve.app.cli import app
from zeroserve.records.state import ServerState
from zeroserve.serve import state as st
from zeroserve.serve import status, stop

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ZEROSERVE_CACHE", str(folder))
    st.private_dirs()
    return folder


def _place(name: str, **changes) -> tuple[dict, Path]:
    """53e25ec's state file `name` in this cache's servers/ (as that version named it: <run_id>.json)."""
    raw = json.loads((FIXTURES / name).read_text())
    raw.update(changes)
    path = st.state_path(raw["run_id"])
    path.write_text(json.dumps(raw, indent=2))
    return raw, path


def test_a_dead_53e25ec_run_is_listed_by_status_and_removed_by_stop(cache, tmp_path):
    old, path = _place("state_dead.json")
    assert "schema_version" not in old and "api_key" not in old
    [dead] = st.dead_servers()
    assert dead.run_id == old["run_id"] and dead.status == st.DEAD and dead.crashes[-1].gave_up
    assert st.list_servers() == []
    report = status.collect_status(tmp_path / "a", tmp_path / "r", None, dead_meant=old["run_id"])
    [row] = report["dead"]
    assert row["run_id"] == old["run_id"] and row["reason"] == old["reason"] and row["log"] == old["log"]
    assert row["crashes"] == old["crashes"] and report["unreadable_state_files"] == []
    assert (
        report["exit_code"] == status.EXIT_NOT_READY
        and report["verdict"] == f"dead: {old['reason']}; log: {old['log']}"
    )
    result = CliRunner().invoke(app, ["stop", "--http-port", str(old["http_port"]), "--json"])
    assert result.exit_code == 0, result.output
    assert [s["run_id"] for s in json.loads(result.stdout)["removed"]] == [old["run_id"]]
    assert not path.exists()


def test_a_53e25ec_state_whose_server_is_gone_is_reaped_keeping_every_field(cache):
    old, path = _place("state_running.json")
    assert old["status"] == "running" and not st.is_running(ServerState.load(path))
    report = stop.stop_servers()  # reaps: marked dead, nothing signalled (the recorded pid is not running)
    assert [r["run_id"] for r in report["reaped"]] == [old["run_id"]] and report["stopped"] == []
    kept = json.loads(path.read_text())
    assert kept["status"] == st.DEAD and kept["reason"] and kept["reaped"] == {"killed": [], "shm_removed": []}
    assert kept["schema_version"] == 1 and "schema" not in kept
    assert {k: v for k, v in kept.items() if k in old and k not in ("status", "reason")} == {
        k: v for k, v in old.items() if k not in ("status", "reason")
    }
    assert stat_mode(path) == 0o600  # written again through the type: owner-only


def test_a_live_53e25ec_server_is_resolved_shown_and_stopped(cache, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old, path = _place("state_running_restarted.json", pid=sleeper.pid, create_time=st.create_time(sleeper.pid))
        state = st.resolve_server(http_port=old["http_port"])
        assert state.run_id == old["run_id"] and state.restarts == 1 and state.crashes[-1].signal == "SIGKILL"
        shown = status.supervision(state)
        assert shown["restarts"] == 1 and shown["last_crash"] == old["crashes"][-1]
        assert shown["supervisor_gone"]  # 53e25ec's supervisor of that run is long gone
        server, dead = status.find_target(None, old["http_port"], None, tmp_path)
        assert server == state and dead is None
        report = stop.stop_servers(http_port=old["http_port"])
        assert [s["run_id"] for s in report["stopped"]] == [old["run_id"]]
        assert sleeper.wait(timeout=10) is not None and not path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_torn_or_foreign_state_file_is_skipped_and_named_never_raised(cache):
    good, _ = _place("state_dead.json")
    (st.servers_dir() / "torn.json").write_text('{"run_id": "torn", "pid": 1')
    (st.servers_dir() / "list.json").write_text("[1, 2]")
    shutil.copy(FIXTURES / "state_running.json", st.servers_dir() / "other-name.json")  # not its run's file
    assert [s.run_id for s in st.read_states()] == [good["run_id"]]
    assert sorted(p.name for p in st.unreadable_states()) == ["list.json", "other-name.json", "torn.json"]
    assert ServerState.of_run(st.servers_dir() / "torn.json") is None


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
