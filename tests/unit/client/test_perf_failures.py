"""Bad answers through the whole `client perf` path: a KServe v2 HTTP server that answers some requests
with the wrong size or an error. Every one is counted by kind, the exit code follows the one rule,
and the outputs asked for are written anyway. (The real server's failures are in tests/e2e.)"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroserve.client.perf.levels import level_count, level_failures
from zeroserve.records.perf import PerfRecord

MODEL = "linear_onnx"


class FakeTriton(ThreadingHTTPServer):
    """Just enough of Triton's HTTP API for `client perf linear`; `script(n)` picks the n-th infer answer."""

    daemon_threads = True

    def __init__(self, script):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.lock = threading.Lock()
        self.infers = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head and body are two writes

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, header_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if header_length is not None:
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Inference-Header-Content-Length", str(header_length))
        else:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path in ("/v2/health/live", f"/v2/models/{MODEL}/ready"):
            self._send(200, b"")
        elif self.path == f"/v2/models/{MODEL}/config":
            self._send(200, json.dumps({"name": MODEL, "max_batch_size": 64}).encode())
        elif self.path == f"/v2/models/{MODEL}/stats":
            n = self.server.infers
            self._send(
                200,
                json.dumps(
                    {
                        "model_stats": [
                            {
                                "name": MODEL,
                                "inference_count": n,
                                "execution_count": n,
                                "inference_stats": {
                                    "success": {"count": n, "ns": 1000 * n},
                                    "compute_infer": {"count": n, "ns": 1000 * n},
                                },
                            }
                        ]
                    }
                ).encode(),
            )
        else:
            self._send(404, json.dumps({"error": f"no {self.path}"}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n_json = int(self.headers.get("Inference-Header-Content-Length") or len(body))
        request = json.loads(body[:n_json])
        batch = request["inputs"][0]["shape"][0]
        with self.server.lock:
            self.server.infers += 1
            what = self.server.script(self.server.infers)
        if what == "error":
            self._send(500, b'{"error":"injected failure"}')
            return
        values = np.full((batch, 1 + (what == "long")), 2.0, np.float32)
        header = json.dumps(
            {
                "model_name": MODEL,
                "model_version": "1",
                "outputs": [
                    {
                        "name": "y__0",
                        "datatype": "FP32",
                        "shape": [batch, 1],
                        "parameters": {"binary_data_size": values.nbytes},
                    }
                ],
            }
        ).encode()
        self._send(200, header + values.tobytes(), len(header))


@pytest.fixture
def fake_triton():
    servers = []

    def start(script):
        server = FakeTriton(script)
        server.thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _perf(port: int, *extra: str):
    from zeroserve.app.cli import app

    return CliRunner().invoke(
        app,
        [
            "client",
            "perf",
            "linear",
            "--protocol",
            "http",
            "--http-port",
            str(port),
            "--grpc-port",
            "1",
            "--window",
            "0.25",
            "--warmup",
            "0.1",
            "--max-trials",
            "3",
            "--allow-unstable",
            "--timeout",
            "2",
            *extra,
        ],
    )


def test_wrong_sizes_and_errors_are_counted_by_kind_exit_1_and_every_output_written(fake_triton, tmp_path):
    # the first answer (perf's reference) is good; later every 7th is too long and every 11th an error
    server = fake_triton(lambda n: "error" if n % 11 == 0 else "long" if n % 7 == 0 else "ok")
    result = _perf(
        server.port,
        "--concurrency",
        "2",
        "--json",
        "--report",
        str(tmp_path / "rep"),
        "--csv",
        str(tmp_path / "levels.csv"),
    )
    assert result.exit_code == 1, result.output
    rec = PerfRecord.parse(json.loads(result.stdout), "perf --json")  # what perf prints is a perf record
    (level,) = rec.levels
    failures, messages = level_failures(level)
    assert failures["wrong_size"] > 0 and failures["http_500"] > 0
    # a long answer that happens to be sampled fails its full decode instead of the size check
    assert set(failures) <= {"wrong_size", "http_500", "bad_output"}
    assert level_count(level, "failed") == sum(failures.values())
    # every request the server answered is counted, once: warm-up, windows and the drain at the end
    assert level_count(level, "requests") == server.infers - 1  # the first was perf's reference request
    assert messages["http_500"] == "injected failure"
    assert rec.outcome.exit_code == 1 and "requests failed" in rec.outcome.reason
    assert all((tmp_path / "rep" / f).stat().st_size for f in ("perf.json", "perf.csv", "perf.png", "perf.html"))
    saved = json.loads((tmp_path / "rep" / "perf.json").read_text())
    assert saved["levels"][0]["totals"] == json.loads(result.stdout)["levels"][0]["totals"]
    assert "schema_version" in saved and "schema" not in saved
    assert "wrong_size=" in (tmp_path / "levels.csv").read_text()
    assert [w.failures for w in level.windows]  # per window, so drift can be seen


def test_failures_can_be_allowed_and_a_clean_run_exits_0(fake_triton):
    server = fake_triton(lambda n: "error" if n % 5 == 0 else "ok")
    assert _perf(server.port, "--concurrency", "1", "--allow-failures").exit_code == 0
    clean = fake_triton(lambda n: "ok")
    result = _perf(clean.port, "--concurrency", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][0]["totals"]["failed"] == 0


def test_failures_only_in_an_early_window_still_fail_the_run(fake_triton):
    # errors while the level warms up and starts, none later: the stable windows look clean
    server = fake_triton(lambda n: "error" if 2 <= n <= 40 else "ok")
    result = _perf(server.port, "--concurrency", "1", "--json")
    assert result.exit_code == 1, result.output
    level = PerfRecord.parse(json.loads(result.stdout)).levels[0]
    assert level_count(level, "failed") == 39
