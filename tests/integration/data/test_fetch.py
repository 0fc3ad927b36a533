"""`zeroserve data fetch` through its real download path, offline: a local HTTP server on 127.0.0.1
serves fixture files (small gzipped IDX files and the course's CSVs) as a mirror."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app
from zeroserve.data import fetch as F
from zeroserve.data import models as DM

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, len(images), 28, 28) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def learnable_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright horizontal band at row 2 + 2*label, over noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k : 4 + 2 * k, 4:24] = 250
    return images, labels


def write_idx_mirror(folder: Path, cls_name: str, seed: int) -> dict[str, str]:
    """Gzipped IDX files as torchvision's mirrors publish them; returns their sha256 by data-folder path."""
    (xtr, ytr), (xte, yte) = learnable_set(600, seed), learnable_set(200, seed + 1)
    raw = folder / cls_name / "raw"
    raw.mkdir(parents=True)
    sums = {}
    for name, payload in zip(IDX, (idx_images(xtr), idx_labels(ytr), idx_images(xte), idx_labels(yte))):
        data = gzip.compress(payload, mtime=0)
        (raw / f"{name}.gz").write_bytes(data)
        sums[f"{cls_name}/raw/{name}.gz"] = hashlib.sha256(data).hexdigest()
    return sums


class Mirror:
    """A stdlib HTTP server in a thread serving a folder; paths in `drop` send half the body and hang up."""

    def __init__(self, root: Path):
        self.root, self.drop, self.requests = root, set(), []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                mirror.requests.append(self.path)
                path = self.path.lstrip("/")
                if path in mirror.drop:
                    body = (root / path).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(tmp_path, data_dir):
    """A mirror with the course's real files (checked against the recorded sums) and IDX fixtures."""
    root = tmp_path / "mirror"
    root.mkdir()
    for files in F.COURSE_DATASETS.values():
        for name in files[1]:
            if not (data_dir / name).is_file():
                pytest.skip(f"course file {name} not in {data_dir}")
            shutil.copy(data_dir / name, root / name)
    sums = {**write_idx_mirror(root, "MNIST", 1), **write_idx_mirror(root, "FashionMNIST", 3)}
    m = Mirror(root)
    m.checksums = sums
    yield m
    m.close()


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_fetch_all_from_a_mirror_then_nothing_again(mirror, tmp_path):
    target = tmp_path / "data"
    rows = F.fetch(DM.resolve(["all"]), target, source=mirror.url, checksums=mirror.checksums)
    assert [(r["dataset"], r["state"]) for r in rows] == [(d, "fetched") for d in F.datasets()]
    for name in ("diabetes.csv.gz", "names_train.csv.gz", "names_test.csv.gz"):
        assert (target / name).read_bytes() == (mirror.root / name).read_bytes()
    for cls in ("MNIST", "FashionMNIST"):
        for name in IDX:  # laid out as torchvision reads them: the .gz and the decompressed file
            assert (target / cls / "raw" / name).read_bytes() == gzip.decompress(
                (mirror.root / cls / "raw" / f"{name}.gz").read_bytes()
            )
            assert (target / cls / "raw" / f"{name}.gz").is_file()
    assert not list(target.glob(F.TEMP_PREFIX + "*"))
    from torchvision.datasets import FashionMNIST

    assert len(FashionMNIST(root=str(target), train=True, download=False)) == 600

    before = len(mirror.requests)
    again = F.fetch(DM.resolve(["all"]), target, source=mirror.url, checksums=mirror.checksums)
    assert {r["state"] for r in again} == {"present"} and len(mirror.requests) == before


@pytest.mark.parametrize("fault", ["checksum", "dropped", "404"])
def test_a_failed_download_leaves_nothing_behind(mirror, tmp_path, fault):
    target = tmp_path / "data"
    target.mkdir()
    sums = dict(mirror.checksums)
    victim = "FashionMNIST/raw/t10k-images-idx3-ubyte.gz"  # the third of four files: two are already staged
    if fault == "checksum":
        sums[victim] = "0" * 64
    elif fault == "dropped":
        mirror.drop.add(victim)
    else:
        (mirror.root / victim).unlink()
    [row] = F.fetch(DM.resolve(["fashion-mnist"]), target, source=mirror.url, checksums=sums)
    assert row["state"] == "failed"
    assert row["exit_code"] == (1 if fault == "checksum" else 3)
    assert {"checksum": "checksum mismatch", "dropped": "connection dropped", "404": "HTTP 404"}[fault] in row["error"]
    assert leftovers(target) == []


def test_a_wrong_checksum_on_the_recorded_course_table_fails(mirror, tmp_path):
    (mirror.root / "diabetes.csv.gz").write_bytes(gzip.compress(b"1,2,3\n"))
    [row] = F.fetch(DM.resolve(["wide_deep"]), tmp_path / "data", source=mirror.url)
    assert row["exit_code"] == 1 and F.COURSE_SHA256["diabetes.csv.gz"] in row["error"]
    assert not (tmp_path / "data").exists()  # a folder fetch created is removed again when nothing landed


def test_present_good_files_need_no_network(data_dir):
    """The course folder already holds the published files: nothing to download (and nothing written)."""
    source = "http://127.0.0.1:9/"  # discard port: any download attempt would fail
    rows = F.fetch(DM.resolve(["diabetes", "names"]), data_dir, source=source)
    assert [r["state"] for r in rows] == ["present", "present"]


def test_a_differing_file_is_kept_unless_forced(mirror, tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "diabetes.csv.gz").write_bytes(b"my own edit")
    [row] = F.fetch(DM.resolve(["diabetes"]), target, source=mirror.url)
    assert row["exit_code"] == 1 and "--force" in row["error"]
    assert (target / "diabetes.csv.gz").read_bytes() == b"my own edit"
    [row] = F.fetch(DM.resolve(["diabetes"]), target, source=mirror.url, force=True)
    assert row["state"] == "fetched"
    assert (target / "diabetes.csv.gz").read_bytes() == (mirror.root / "diabetes.csv.gz").read_bytes()


def test_names_resolve_to_data_sets():
    assert [d.name for d in DM.resolve(["name_gru", "fashion"])] == ["names", "fashion-mnist"]
    assert [d.name for d in DM.resolve(["cnn_mnist,softmax_mnist"])] == ["mnist"]
    assert DM.resolve(["linear"]) == []
    for spec in registry.REGISTRY.values():  # every course file a model reads is fetchable
        fetchable = {f.path for n in DM.dataset_names_for_model(spec) for f in F.datasets()[n].files}
        assert set(spec.data.files) <= fetchable


def test_cli_offline_exits_3_with_a_clear_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused, as when offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(
        app, ["data", "fetch", "all", "--data-dir", str(tmp_path / "d"), "--source", f"http://127.0.0.1:{port}"]
    )
    assert res.exit_code == 3, res.output
    assert "could not download" in res.output and "--source" in res.output
    assert not (tmp_path / "d").exists()


def test_cli_unknown_name_is_a_usage_error(tmp_path):
    res = CliRunner().invoke(app, ["data", "fetch", "imagenet", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "fashion-mnist" in res.output and "cnn_mnist" in res.output


def test_fashion_mlp_trains_on_fetched_fashion_mnist(mirror, tmp_path, monkeypatch):
    """The mirror through ZEROSERVE_DATA_MIRROR and --checksums, then training reads the IDX files."""
    from zeroserve.train import train_model

    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps(mirror.checksums))
    target = tmp_path / "data"
    monkeypatch.setenv(F.MIRROR_ENV, mirror.url)
    res = CliRunner().invoke(
        app, ["data", "fetch", "fashion_mlp", "--data-dir", str(target), "--checksums", str(sums), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert [r["state"] for r in json.loads(res.stdout)["datasets"]] == ["fetched"]
    rec = train_model(registry.get("fashion_mlp"), target, tmp_path / "artifacts", epochs=3)
    assert "FashionMNIST IDX files" in str(rec.data.source) and rec.data.note == ""
    assert rec.data.sizes == {"train": 600, "test": 200}
    assert rec.metric.value >= 0.9


def test_train_names_the_fetch_command_that_fixes_a_fallback_or_a_skip(tmp_path):
    empty = tmp_path / "no data"
    empty.mkdir()  # a folder given with --data-dir must exist (a missing one is exit 2 at once)
    args = ["--data-dir", str(empty), "--artifacts", str(tmp_path / "artifacts"), "--epochs", "1"]
    res = CliRunner().invoke(app, ["train", "wide_deep", *args])
    assert res.exit_code == 2 and F.fetch_command("diabetes", empty) in res.output
    res = CliRunner().invoke(app, ["train", "fashion_mlp", "--json", *args])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert F.fetch_command("fashion-mnist", empty) in out["trained"][0]["data"]["note"]
    assert out["fix"] == F.fetch_command(["fashion-mnist"], empty)


def test_status_shows_each_models_data_source(tmp_path):
    from zeroserve.serve.status import collect_status
    from zeroserve.train import train_model

    train_model(registry.get("linear"), tmp_path / "data", tmp_path / "artifacts", epochs=1)
    rows = {r["model"]: r["data"] for r in collect_status(tmp_path / "artifacts", tmp_path / "repo", None)["models"]}
    assert rows["linear"]["from"] == "train.json" and rows["linear"]["source"].startswith("inline")
    assert rows["fashion_mlp"] == {
        "source": registry.get("fashion_mlp").data.description,
        "note": "",
        "from": "registry",
    }


def test_a_verified_gz_is_unpacked_again_without_a_download(mirror, tmp_path):
    target = tmp_path / "data"
    F.fetch(DM.resolve(["mnist"]), target, source=mirror.url, checksums=mirror.checksums)
    unpacked = target / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    expected = unpacked.read_bytes()
    unpacked.unlink()
    before = len(mirror.requests)
    [row] = F.fetch(DM.resolve(["mnist"]), target, source=mirror.url, checksums=mirror.checksums)
    assert row["state"] == "fetched" and row["files"] == [str(unpacked)]
    assert unpacked.read_bytes() == expected and len(mirror.requests) == before


def test_idx_sets_follow_torchvisions_own_mirrors_and_md5_table(mirror, tmp_path, monkeypatch):
    """No --source and no injected sums: the mirrors and md5s come from torchvision's class attributes."""
    from torchvision.datasets import FashionMNIST

    raw = mirror.root / "FashionMNIST" / "raw"
    monkeypatch.delenv(F.MIRROR_ENV, raising=False)
    monkeypatch.setattr(FashionMNIST, "mirrors", [mirror.url + "FashionMNIST/raw/"])
    monkeypatch.setattr(
        FashionMNIST, "resources", [(f"{n}.gz", hashlib.md5((raw / f"{n}.gz").read_bytes()).hexdigest()) for n in IDX]
    )
    [row] = F.fetch(DM.resolve(["fashion-mnist"]), tmp_path / "data")
    assert row["state"] == "fetched" and len(row["files"]) == 8
    assert len(FashionMNIST(root=str(tmp_path / "data"), train=False, download=False)) == 200


@pytest.mark.parametrize("online", [True, False])
def test_demo_fetches_into_data_and_never_into_the_folder_it_reads(mirror, tmp_path, monkeypatch, online):
    """make demo's first step, through the real CLI in a subprocess; the mirror stands in for the internet."""
    from rich.console import Console

    from zeroserve.app import demo

    read_dir = tmp_path / "course"
    read_dir.mkdir()
    for name in ("diabetes.csv.gz", "names_train.csv.gz", "names_test.csv.gz"):
        shutil.copy(mirror.root / name, read_dir / name)
    read_dir.chmod(0o555)
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps(mirror.checksums))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("ZEROSERVE_DATA_DIR", str(read_dir))
    monkeypatch.setenv(F.MIRROR_ENV, mirror.url if online else dead)
    monkeypatch.setenv(F.CHECKSUMS_ENV, str(sums))
    results: list = []
    console = Console(record=True, width=200)
    env = demo._fetch_data(console, results)
    assert sorted(p.name for p in read_dir.iterdir()) == ["diabetes.csv.gz", "names_test.csv.gz", "names_train.csv.gz"]
    if online:
        assert results[0][:2] == ("data fetch", 0)
        assert env["ZEROSERVE_DATA_DIR"] == str(work / "data")
        assert all(F.is_present(d, work / "data") for d in F.datasets().values() if d.name in ("diabetes", "names"))
        assert (work / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    else:
        assert results[0][:2] == ("data fetch", 3)
        assert env["ZEROSERVE_DATA_DIR"] == str(read_dir) and not (work / "data").exists()
        said = console.export_text()
        assert "without mnist" in said and "fashion_mlp" in said


def test_a_killed_fetchs_temporary_folder_is_cleaned_up(mirror, tmp_path):
    target = tmp_path / "data"
    stale = target / f"{F.TEMP_PREFIX}999999999.1-abc"  # no such pid: its fetch was killed
    stale.mkdir(parents=True)
    (stale / "diabetes.csv.gz").write_bytes(b"half")
    [row] = F.fetch(DM.resolve(["diabetes"]), target, source=mirror.url)
    assert row["state"] == "fetched" and leftovers(target) == ["diabetes.csv.gz"]


@pytest.mark.parametrize("form", ["folder", "file-url"])
def test_a_mirror_folder_or_file_url_is_fetched_verified_and_renamed_into_place(mirror, tmp_path, form):
    """`--source FOLDER` and `--source file:///...` go through the same download, verify, rename path as http."""
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps(mirror.checksums))
    source = str(mirror.root) if form == "folder" else mirror.root.resolve().as_uri()
    target = tmp_path / "data"
    res = CliRunner().invoke(
        app, ["data", "fetch", "mnist", "--data-dir", str(target), "--source", source, "--checksums", str(sums)]
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    for name in IDX:
        assert (target / "MNIST" / "raw" / f"{name}.gz").read_bytes() == (
            mirror.root / "MNIST/raw" / f"{name}.gz"
        ).read_bytes()
        assert (target / "MNIST" / "raw" / name).is_file()
    assert not [p for p in target.iterdir() if p.name.startswith(F.TEMP_PREFIX)]
    assert mirror.requests == []  # read from the folder, not through the HTTP server


@pytest.mark.parametrize("form", ["folder", "file-url"])
def test_a_corrupted_file_in_a_mirror_folder_is_refused_with_nothing_left_behind(mirror, tmp_path, form):
    victim = mirror.root / "MNIST/raw/t10k-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps(mirror.checksums))
    source = str(mirror.root) if form == "folder" else mirror.root.resolve().as_uri()
    target = tmp_path / "data"
    res = CliRunner().invoke(
        app, ["data", "fetch", "mnist", "--data-dir", str(target), "--source", source, "--checksums", str(sums)]
    )
    assert res.exit_code == 1, res.output
    assert "checksum mismatch" in res.output and "Traceback" not in res.output
    assert leftovers(target) == []
