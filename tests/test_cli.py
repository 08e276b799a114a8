"""The `lathe` command as a user runs it: classify, check, info, compile + run, targets, errors."""

import numpy as np
import pytest

from lathe.cli import main

pytest.importorskip("onnxruntime")


def test_classify_the_cat_on_llvm(capsys):
    assert main(["classify", "-t", "llvm"]) == 0
    lines = [ln.split(None, 1) for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert [name for _, name in lines[:3]] == ["tiger cat", "Egyptian cat", "tabby"]
    assert abs(float(lines[0][0]) - 0.3834) < 1e-3  # ONNX Runtime gives 0.3834 on the same graph


@pytest.mark.parametrize("model", ["resnet18", "efficientnet_lite0"])
@pytest.mark.parametrize("target", ["llvm", "c"])
def test_check_against_onnxruntime(model, target, capsys):
    assert main(["check", model, "-t", target, "--rtol", "1e-4"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_info_counts_flops_and_ops(capsys):
    assert main(["info", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs: 3.6" in out and "Conv                     20" in out


def test_compile_then_run_the_artifact(tmp_path, capsys):
    art, x, y = tmp_path / "r18", tmp_path / "x.npy", tmp_path / "y.npy"
    assert main(["compile", "resnet18", "-t", "llvm", "-o", str(art)]) == 0
    np.save(x, np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32"))
    assert main(["run", str(art), "--input", f"input={x}", "--output", str(y)]) == 0
    assert np.load(y).shape == (1, 1000) and np.isfinite(np.load(y)).all()
    assert main(["run", str(art), "--input", f"nope={x}"]) == 2
    assert "not inputs of this model" in capsys.readouterr().err


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "no_such_model"]) == 2
    assert "neither a model file nor a zoo model" in capsys.readouterr().err


def test_targets_lists_every_kind(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for kind in ("llvm", "c", "cuda", "opencl", "opengl", "webgl", "webgpu", "wasm"):
        assert kind in out


def test_bench_compares_with_onnxruntime_in_one_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "resnet18", "-t", "llvm", "--runs", "3", "--peers", "onnxruntime", "--json", str(out),
                 "--profile"]) == 0
    import json

    data = json.loads(out.read_text())
    assert set(data["results"]) == {"lathe llvm", "onnxruntime"} and data["machine"]["cores"] >= 1
    assert data["results"]["onnxruntime"]["ratio_to_fastest_peer"] == 1.0
    assert data["results"]["lathe llvm"]["median_ms"] > 0
    prof = data["profile"]
    convs = [k for k in prof["kernels"] if "Conv" in k["ops"]]
    # ResNet-18's convolutions are 3.63 GFLOP (1.8 G multiply-adds); every kernel is timed and counted
    assert abs(sum(k["flops"] for k in convs) / 1e9 - 3.63) < 0.02 and len(convs) == 20
    assert prof["fma_peak_gflops"] > 0 and all(k["ms"] > 0 for k in prof["kernels"])
    assert "per-kernel profile" in capsys.readouterr().out
