"""Tuning in a browser (lathe.tune.measure.BrowserRunner): candidates for webgpu, wasm and webgl are measured
in real headless Chromium, faulty ones become records, and the records apply in lathe.compile.

Tolerance: 1e-4 of max |NumPy output| (float32 sums of 144 products; measured ~1e-7)."""

import numpy as np
import pytest

import lathe
from lathe.rpc.server import chromium_path
from lathe.tune import load_records
from lathe.tune.measure import BrowserRunner
from lathe.tune.task import tasks_from_model
from lathe.tune.tuner import measure, tune

pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install lathe[web])")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no /usr/bin/chromium (apt-get install chromium)")
from test_tune import conv_model  # noqa: E402

TOL = 1e-4


def conv_relu_numpy(x: np.ndarray, model) -> np.ndarray:
    from onnx import numpy_helper

    w, b = (numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # (1, C, H, W, 3, 3)
    return np.maximum(np.einsum("nchwij,kcij->nkhw", windows, w) + b[None, :, None, None], 0)


@pytest.mark.parametrize("target", ["webgpu", "wasm", "webgl"])
def test_tune_in_browser_and_apply_records(browser_session, tmp_path, target: str) -> None:
    if target == "wasm":
        from lathe.codegen.wasm import clang_path

        if clang_path() is None:
            pytest.skip("no clang/lld for wasm32 (apt-get install clang lld)")
    model, log = conv_model(), str(tmp_path / "log.jsonl")
    tasks = tasks_from_model(model, target)
    assert len(tasks) == 1
    runner = BrowserRunner(browser_session)
    summary = tune(tasks, log, trials=4, tuner="random", progress=False, validate=1, runner=runner)
    recs = load_records(log)
    trials = min(4, tasks[0].size())  # webgl's only knob here, unroll_k, has 2 values
    assert len([r for r in recs if r["tuner"] != "validate"]) == trials and summary[0]["trials"] == trials
    assert all(r["status"] == "ok" and r["min_s"] > 0 for r in recs), [r["error"] for r in recs]
    assert any(r["tuner"] == "validate" for r in recs)  # finalists measured again in the tab
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    want = conv_relu_numpy(x, model)
    other = next(r["config"] for r in recs if r["config"] != tasks[0].default)  # a measured non-default schedule
    plain = lathe.compile(model, target)
    for records in (log, {tasks[0].key: other}):
        mod = lathe.compile(model, target, records=records)
        got = mod.attach(browser_session).run({"x": x})[0]
        assert got.shape == want.shape and np.abs(got - want).max() <= TOL * np.abs(want).max()
    assert mod.source != plain.source


def test_faulty_candidates_in_browser_are_records(browser_session) -> None:
    (task,) = tasks_from_model(conv_model(), "webgpu")
    runner = BrowserRunner(browser_session)
    ok, ref = measure(task, task.default, None, 10, runner)
    assert ok["status"] == "ok" and ok["gflops"] > 0
    wrong, _ = measure(task, {**task.default, "_fault": "wrong"}, ref, 10, runner)
    assert wrong["status"] == "wrong"
    broken, _ = measure(task, {**task.default, "_fault": "broken"}, ref, 10, runner)
    assert broken["status"] == "error" and "does not compile" in broken["error"]
    crash, _ = measure(task, {**task.default, "_fault": "crash"}, ref, 3, runner)  # the tab dies: a new browser
    assert crash["status"] == "error" and "browser" in crash["error"]
    hang, _ = measure(task, {**task.default, "_fault": "hang"}, ref, 3, runner)  # the tab never answers
    assert hang["status"] == "timeout"
    again, _ = measure(task, task.default, ref, 10, runner)  # the runner goes on in the restarted browser
    assert again["status"] == "ok" and 0.2 < again["vs_default"] < 5


def test_tune_command_measures_browser_targets_in_a_tab(browser_session, tmp_path, monkeypatch, capsys) -> None:
    import onnx

    import lathe.rpc
    from lathe.cli import main

    path, log = str(tmp_path / "m.onnx"), str(tmp_path / "log.jsonl")
    onnx.save(conv_model(), path)
    monkeypatch.setattr(lathe.rpc, "browser", lambda launch=True: browser_session)  # this test run's Chromium
    monkeypatch.setattr(browser_session, "close", lambda: None)
    assert main(["tune", path, "-t", "webgl", "--trials", "2", "--tuner", "grid", "--log", log]) == 0
    assert "measuring in headless Chromium through lathe.rpc" in capsys.readouterr().out
    recs = load_records(log)
    assert len(recs) >= 2 and all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
