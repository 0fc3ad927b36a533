"""Variants (int8, int8-dynamic, optimized, fp16): made by ONNX Runtime's tools, held to the variant gate,
recorded in export.json, refused by deploy when they fail, and bad requests refused in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from zeroserve import formats as F
from zeroserve import parity, registry
from zeroserve.app.cli import app
from zeroserve.deploy.checks import default_formats
from zeroserve.deploy.release import check_onnx_target
from zeroserve.deploy.repository import deploy_model
from zeroserve.errors import InputError
from zeroserve.export import export_model
from zeroserve.export.exporter import sha256
from zeroserve.export.variant_gate import gpu_present
from zeroserve.export.variants import VariantOptions

runner = CliRunner()
MADE = ("onnx_int8", "onnx_int8dyn", "onnx_optimized")


def test_every_variant_is_recorded_with_its_gate_file_and_latency(variant_artifacts):
    artifacts, record = variant_artifacts
    rec = record.to_json()  # the JSON export.json holds
    folder = artifacts / "softmax_mnist"
    base = rec["formats"]["onnx"]
    for key in (*MADE, "onnx_fp16"):
        e, fmt = rec["formats"][key], F.get(key)
        path = folder / fmt.file
        assert e["sha256"] == sha256(path) and e["bytes"] == path.stat().st_size
        assert e["variant"] == fmt.variant and e["base_sha256"] == base["sha256"]
        assert e["rule"]["max_metric_drop"] == 0.5 and e["rule"]["min_agreement"] == 99.0
        check_onnx_target(fmt.triton_name("softmax_mnist"), path, record.formats[key])  # loads in the target's ORT
    for key in MADE:
        e = rec["formats"][key]
        assert e["status"] == "PASS", e["failed_rules"]
        assert e["held_out"]["samples"] >= 1000 and e["metric"] == "accuracy"
        assert e["metric_variant"] >= e["metric_fp32"] - 0.005 and e["top1_agreement"] >= 0.99
        assert e["max_abs"] > 0 or key == "onnx_optimized"
        for batch in (1, 64):
            assert set(e["latency_ms"][f"batch_{batch}"]) >= {"onnx", key}
    assert rec["formats"]["onnx_int8"]["calibration"] == {
        "method": "minmax",
        "samples": 512,
        "source": "training split, seeded draw (seed 0)",
    }
    assert rec["formats"]["onnx_int8"]["quantized"]["int8_weights"] >= 2
    assert rec["formats"]["onnx_int8"]["bytes"] < base["bytes"] / 3
    optimized = onnx.load(str(folder / F.get("onnx_optimized").file))
    assert {n.domain for n in optimized.graph.node} <= {""}, "the optimized graph must stay in the ONNX domain"
    assert rec["formats"]["onnx_optimized"]["level"] == "basic"


def test_fp16_is_written_linted_and_unverified_without_a_gpu(variant_artifacts):
    artifacts, rec = variant_artifacts
    e = rec.formats["onnx_fp16"].to_json()
    model = onnx.load(str(artifacts / "softmax_mnist" / e["file"]))
    onnx.checker.check_model(model, full_check=True)
    io = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
    spec = registry.get("softmax_mnist")
    assert io == {t.name: onnx.TensorProto.FLOAT for t in (*spec.inputs, *spec.outputs)}
    assert e["float16_initializers"] >= 2
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    if not gpu_present():
        assert e["status"] == "UNVERIFIED" and "GPU" in e["reason"] and "latency_ms" not in e


def test_name_gru_int8_dynamic_says_the_gru_stays_float(exported, tmp_path):
    from zeroserve.export.variants import BUILDERS

    shutil.copy(exported[0] / "name_gru" / "model.onnx", tmp_path / "model.onnx")
    info = BUILDERS["onnx_int8dyn"](registry.get("name_gru"), None, tmp_path / "v.onnx", work=tmp_path)
    assert info["quantized"]["left_float"] == ["GRU"] and info["quantized"]["int8_weights"] >= 2
    assert "not GRU or RNN" in info["note"]


def test_a_variant_calibrated_on_zeros_fails_is_recorded_and_refused_by_deploy(exported, tmp_path, data_dir):
    shutil.copytree(exported[0] / "softmax_mnist", tmp_path / "art" / "softmax_mnist")
    spec, artifacts = registry.get("softmax_mnist"), tmp_path / "art"
    zeros = VariantOptions(calibration_inputs=[np.zeros((64, 1, 28, 28), np.float32)])
    rec = export_model(spec, artifacts, variants="int8", data_dir=data_dir, latency=False, variant_options=zeros)
    e = json.loads((artifacts / "softmax_mnist" / "export.json").read_text())["formats"]["onnx_int8"]
    assert rec.status == "PASS" and e["status"] == "FAIL"  # the fp32 export stands; the variant is recorded FAIL
    assert any("accuracy" in r and "points below fp32" in r for r in e["failed_rules"]) or any(
        "agreement" in r for r in e["failed_rules"]
    )
    assert not (artifacts / "softmax_mnist" / F.get("onnx_int8").file).exists()
    with pytest.raises(InputError, match=r"onnx_int8: export status is FAIL.*(accuracy|agreement)"):
        deploy_model(spec, artifacts, tmp_path / "repo", formats="onnx_int8")
    formats, skipped = default_formats(rec)
    assert "onnx_int8" not in formats and skipped[0]["format"] == "onnx_int8"
    assert not (tmp_path / "repo" / "softmax_mnist_onnx_int8").exists()


def test_the_cli_writes_the_variant_report(exported, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path / "cache"))  # no server: in-process figures only
    shutil.copytree(exported[0] / "softmax_mnist", tmp_path / "softmax_mnist")
    result = runner.invoke(
        app,
        [
            "export",
            "softmax_mnist",
            "--artifacts",
            str(tmp_path),
            "--variant",
            "optimized",
            "--min-agreement",
            "100",
            "--max-metric-drop",
            "0",
            "--data-dir",
            str(data_dir),
            "--report",
            str(tmp_path / "report"),
        ],
    )
    # optimized is exact here, so it passes even the strictest rule: the report is written either way
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "variants.json").read_text())
    assert report["rows"][0]["variant"] == "optimized" and report["rows"][0]["verdict"]
    assert (tmp_path / "report" / "variants.png").read_bytes()[:4] == b"\x89PNG"
    assert "| softmax_mnist | optimized | PASS |" in (tmp_path / "report" / "variants.md").read_text()

    # a fault injected: int8 calibrated on zeros fails its gate; the CLI names the rule and numbers, exits 1
    from zeroserve.export import variants

    monkeypatch.setattr(variants, "_calibration", lambda spec, split, opts: [np.zeros((64, 1, 28, 28), np.float32)])
    result = runner.invoke(
        app, ["export", "softmax_mnist", "--artifacts", str(tmp_path), "--variant", "int8", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 1, result.output
    assert "softmax_mnist onnx_int8 failed the variant gate" in result.output
    assert "vs fp32's" in result.output or "agreement with eager" in result.output
    rec = json.loads((tmp_path / "softmax_mnist" / "export.json").read_text())
    assert rec["formats"]["onnx_int8"]["status"] == "FAIL" and rec["formats"]["onnx_optimized"]["status"] == "PASS"


def test_bad_variant_requests_are_one_line_exit_2_and_write_nothing(exported, tmp_path, data_dir):
    never = tmp_path / "never"
    (never / "softmax_mnist").mkdir(parents=True)
    for f in ("checkpoint.pt", "train.json"):
        shutil.copy(exported[0] / "softmax_mnist" / f, never / "softmax_mnist" / f)
    shutil.copytree(exported[0] / "hello_rnn", tmp_path / "rnn" / "hello_rnn")
    before = sha256(tmp_path / "rnn" / "hello_rnn" / "export.json")
    cases = [
        (["softmax_mnist", "--artifacts", str(never), "--variant", "int8"], "was never exported"),
        (
            [
                "softmax_mnist",
                "--artifacts",
                str(never),
                "--variant",
                "int8",
                "--calibration-method",
                "entropy",
                "--calibration-samples",
                "50",
            ],
            "too few for entropy calibration",
        ),
        (
            ["hello_rnn", "--artifacts", str(tmp_path / "rnn"), "--variant", "int8-dynamic"],
            # on the dynamo graph the RNN is a Loop: ONNX Runtime's pre-processing or quantizer gives up on it
            "the int8-dynamic variant cannot be made",
        ),
        (["hello_rnn", "--artifacts", str(tmp_path / "rnn"), "--variant", "int8"], "too few for minmax calibration"),
        (["softmax_mnist", "--artifacts", str(never), "--variant", "int4"], "unknown variant int4"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["export", *args, "--data-dir", str(data_dir)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in (never / "softmax_mnist").iterdir()) == ["checkpoint.pt", "train.json"]
    assert sha256(tmp_path / "rnn" / "hello_rnn" / "export.json") == before
    assert not list((tmp_path / "rnn" / "hello_rnn").glob("*.int8*")) and not list(
        (tmp_path / "rnn" / "hello_rnn").glob(".export-*")
    )


def test_the_variant_rule_reads_the_task():
    spec = registry.get("softmax_mnist")
    eager = np.eye(10, dtype=np.float32)[np.arange(200) % 10]
    target = np.arange(200) % 10
    worse = eager.copy()
    worse[:3] = np.roll(worse[:3], 1, axis=1)  # 3 of 200 decisions flip: 98.5% agreement, 1.5 points lost
    rule = parity.VariantRule()
    tol = parity.Tolerance()
    ok = parity.judge_variant(spec, [eager], [eager], target, rule, tol)
    bad = parity.judge_variant(spec, [worse], [eager], target, rule, tol)
    assert ok["passed"] and not bad["passed"] and len(bad["failed_rules"]) == 2
    assert parity.judge_variant(spec, [worse], [eager], target, parity.VariantRule(2.0, 98.0), tol)["passed"]
    lin = registry.get("linear")
    y = np.linspace(0, 1, 50, dtype=np.float32).reshape(-1, 1)
    fp32 = y + 0.1
    assert parity.judge_variant(lin, [y + 0.1024], [fp32], y, rule, tol)["passed"]  # mse +4.9%
    assert not parity.judge_variant(lin, [y + 0.103], [fp32], y, rule, tol)["passed"]  # mse +6.1%
    with pytest.raises(InputError):
        parity.VariantRule(min_agreement=101)


def test_under_all_an_unfit_variant_is_skipped_and_the_others_are_made(exported, tmp_path, data_dir):
    shutil.copytree(exported[0] / "linear", tmp_path / "linear")
    shutil.copytree(exported[0] / "hello_rnn", tmp_path / "hello_rnn")
    rec = export_model(
        registry.get("linear"),
        tmp_path,
        variants=("int8", "int8-dynamic"),
        data_dir=data_dir,
        latency=False,
        skip_unfit=True,
    )  # 3 training samples: no int8 calibration
    assert [u.variant for u in rec.skipped_variants or []] == ["int8"]
    assert rec.skipped_variants and "too few for minmax calibration" in rec.skipped_variants[0].reason
    written = json.loads((tmp_path / "linear" / "export.json").read_text())
    assert written["formats"]["onnx_int8dyn"]["status"] == "PASS" and "onnx_int8" not in written["formats"]
    assert "skipped_variants" not in written and not (tmp_path / "linear" / F.get("onnx_int8").file).exists()

    before = sha256(tmp_path / "hello_rnn" / "export.json")
    with pytest.raises(InputError, match="too few for minmax calibration.*the int8-dynamic variant cannot be made"):
        export_model(
            registry.get("hello_rnn"),
            tmp_path,
            variants=("int8", "int8-dynamic"),
            data_dir=data_dir,
            latency=False,
            skip_unfit=True,
        )  # every variant unfit: the model is skipped, nothing written
    assert sha256(tmp_path / "hello_rnn" / "export.json") == before

    result = runner.invoke(
        app,
        [
            "export",
            "all",
            "--artifacts",
            str(tmp_path),
            "--variant",
            "int8,int8-dynamic",
            "--data-dir",
            str(data_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {(s["model"], s.get("variant")) for s in out["skipped"]} >= {("linear", "int8"), ("hello_rnn", None)}
