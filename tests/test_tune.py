"""Auto-tuning (lathe/tune): knobs default to the heuristics, faulty candidates are recorded and
skipped, records apply in compile(), a killed run resumes from its log. Tiny workloads, few trials."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lathe
from lathe.tune import Config, best_configs, current, load_records, using
from lathe.tune.task import tasks_from_model
from lathe.tune.tuner import GridTuner, measure, tune

TOL = 1e-4  # relative to max |reference|


def conv_model(channels: int = 16, size: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1
    b = rng.standard_normal(channels).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])
    g = helper.make_graph(nodes, "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)


def _rel_err(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def test_default_config_answers_the_heuristic():
    assert current().choice("k", (1, 2, 4), 3) == 3  # outside `using`: the default, always a candidate
    with using(Config({"k": 4})) as cfg:
        assert current().choice("k", (1, 2, 4), 3) == 4
        assert current().choice("other", (1, 2), 2) == 2
    assert cfg.space == {"k": ([3, 1, 2, 4], 3), "other": ([2, 1], 2)}
    with using(Config({"k": 5})):  # a stale record value outside the candidates falls back
        assert current().choice("k", (1, 2, 4), 3) == 3


def test_tasks_declare_conv_knobs():
    (task,) = tasks_from_model(conv_model(), "llvm -threads=2")
    assert {"cb", "wt", "rows_first", "acc"} <= set(task.space) and task.size() > 4
    assert all(task.space[k][0] == v for k, v in task.default.items())  # the heuristic is listed first
    assert "Conv" in task.key and "llvm" in task.key and "float32[1, 1, 8, 8, 16]" in task.key


def test_faulty_candidates_are_recorded_not_fatal():
    (task,) = tasks_from_model(conv_model(), "llvm -threads=2")
    ok, ref = measure(task, task.default, None, timeout=60)
    assert ok["status"] == "ok" and ok["min_s"] > 0 and ok["gflops"] > 0
    crash, _ = measure(task, {**task.default, "_fault": "crash"}, ref, timeout=60)
    assert crash["status"] == "error" and "SIGABRT" in crash["error"]
    t0 = time.perf_counter()
    hang, _ = measure(task, {**task.default, "_fault": "hang"}, ref, timeout=3)
    assert hang["status"] == "timeout" and time.perf_counter() - t0 < 20
    wrong, _ = measure(task, {**task.default, "_fault": "wrong"}, ref, timeout=60)
    assert wrong["status"] == "wrong"
    again, _ = measure(task, task.default, ref, timeout=60)  # the tuner's workers still work afterwards
    assert again["status"] == "ok"


@pytest.mark.parametrize("tuner", ["random", "xgb"])
def test_tune_logs_and_compile_applies_records(tmp_path, tuner):
    if tuner == "xgb":
        pytest.importorskip("xgboost", reason="the xgb tuner needs xgboost (pip install lathe[tune])")
    model, log = conv_model(), str(tmp_path / "log.jsonl")
    tasks = tasks_from_model(model, "llvm -threads=2")
    summary = tune(tasks, log, trials=7, tuner=tuner, progress=False)
    recs = load_records(log)
    search = [r for r in recs if r["tuner"] != "validate"]
    assert len(search) == 7 and summary[0]["trials"] == 7
    assert len({json.dumps(r["config"], sort_keys=True) for r in search}) == 7  # no candidate measured twice
    assert len(recs) - len(search) == 2 * 4  # then the default and the 3 fastest, twice more
    assert all(r["status"] == "ok" for r in recs), [r["error"] for r in recs if r["status"] != "ok"]
    best = best_configs(log)[tasks[0].key]
    assert best == summary[0]["best_config"]
    plain = lathe.compile(model, "llvm -threads=2").run({"x": _x()})[0]
    tuned = lathe.compile(model, "llvm -threads=2", records=log).run({"x": _x()})[0]
    assert _rel_err(tuned, plain) <= TOL


def test_records_change_the_compiled_kernel():
    model = conv_model()
    (task,) = tasks_from_model(model, "llvm -threads=2")
    other = {**task.default, "wt": next(w for w in task.space["wt"] if w != task.default["wt"])}
    plain = lathe.compile(model, "llvm -threads=2")
    tuned = lathe.compile(model, "llvm -threads=2", records={task.key: other})
    same = lathe.compile(model, "llvm -threads=2", records={task.key: task.default})
    assert tuned.source != plain.source and same.source == plain.source
    assert _rel_err(tuned.run({"x": _x()})[0], plain.run({"x": _x()})[0]) <= TOL


@pytest.mark.parametrize("channels,knobs", [(16, {"taps_inner": True, "acc": "row"}),
                                             (32, {"unroll_k": 4, "wino_channels_outer": True, "wino_rows": False})])
def test_loop_order_knobs_apply_and_match_onnxruntime(channels, knobs):
    """Direct (16 channels) and Winograd (32) kernels declare the loop-order knobs; a record choosing
    non-default values changes the kernel, and the model still matches ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime", reason="the reference is ONNX Runtime")
    model = conv_model(channels)
    (task,) = tasks_from_model(model, "llvm -threads=2")
    assert set(knobs) <= set(task.space) and all(v in task.space[k] for k, v in knobs.items())
    assert all(task.default[k] != v for k, v in knobs.items() if k in ("taps_inner", "unroll_k", "wino_channels_outer"))
    x = np.random.default_rng(0).standard_normal((1, channels, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    plain = lathe.compile(model, "llvm -threads=2")
    tuned = lathe.compile(model, "llvm -threads=2", records={task.key: {**task.default, **knobs}})
    assert tuned.source != plain.source
    assert _rel_err(tuned.run({"x": x})[0], want) <= 5e-5  # Winograd's transforms round a little more than 1e-5


def test_best_record_needs_a_real_gain():
    def rec(cfg: dict, t: float, tuner: str = "xgb") -> dict:
        return {"workload": "w", "config": cfg, "status": "ok", "vs_default": t, "tuner": tuner}

    d, a, b = {"k": 1}, {"k": 2}, {"k": 3}
    assert best_configs([rec(d, 1.0, "default"), rec(a, 0.99)])["w"] == d  # inside the noise margin
    assert best_configs([rec(d, 1.0, "default"), rec(a, 0.9)])["w"] == a
    # validated configs (measured 3 times) outrank a single lucky measurement; their median counts
    recs = [rec(d, 1.0, "default"), rec(b, 0.5)] + [rec(a, t) for t in (0.8, 0.9, 0.95)] + \
        [rec(d, 1.0, "validate"), rec(d, 1.1, "validate")]
    assert best_configs(recs)["w"] == a and best_configs([{**recs[0], "status": "error"}]) == {}
    # timed inside the whole model, the config is slower: that decides, the default stays
    assert best_configs(recs + [rec(a, 1.05, "model")])["w"] == d
    assert best_configs(recs + [rec(a, 0.9, "model")])["w"] == a


def test_validate_in_model_logs_each_changed_kernel(tmp_path):
    from lathe.tune.tuner import validate_in_model

    model, log = conv_model(), str(tmp_path / "log.jsonl")
    (task,) = tasks_from_model(model, "llvm -threads=2")
    assert validate_in_model(model, [task], log) == {}  # nothing tuned: nothing to time
    other = {**task.default, "wt": next(w for w in task.space["wt"] if w != task.default["wt"])}
    with open(log, "w") as f:
        for cfg, t, tuner in ((task.default, 1.0, "default"), (other, 0.5, "xgb")):
            f.write(json.dumps({"workload": task.key, "config": cfg, "status": "ok", "vs_default": t,
                                "min_s": 1e-4, "gflops": 1.0, "tuner": tuner}) + "\n")
    ratios = validate_in_model(model, [task], log, rounds=3)
    (logged,) = [r for r in load_records(log) if r["tuner"] == "model"]
    assert ratios == {task.key: logged["vs_default"]} and logged["config"] == other and logged["vs_default"] > 0
    assert best_configs(log)[task.key] == (other if logged["vs_default"] <= 0.98 else task.default)


def test_grid_tuner_walks_the_space_in_order():
    (task,) = tasks_from_model(conv_model(), "llvm -threads=2")
    everything = task.all_configs()
    first = GridTuner(task, None).propose(3, set())
    assert first == everything[:3] and len(everything) == task.size()


def test_killed_run_resumes_from_its_log(tmp_path):
    path, log = str(tmp_path / "m.onnx"), str(tmp_path / "log.jsonl")
    onnx.save(conv_model(), path)
    code = ("from lathe.tune.task import tasks_from_model\nfrom lathe.tune.tuner import tune\n"
            f"if __name__ == '__main__':\n    tune(tasks_from_model({path!r}, 'llvm -threads=2'), {log!r}, 12, 'grid',"
            " progress=False)\n")
    script = tmp_path / "run.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(load_records(log)) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the tuner and its workers, mid-run
    proc.wait()
    killed_at = len(load_records(log))
    assert 3 <= killed_at < 12
    with open(log, "a") as f:
        f.write('{"workload": "torn')  # a line cut by the kill
    tune(tasks_from_model(path, "llvm -threads=2"), log, 12, "grid", progress=False)
    recs = [r for r in load_records(log) if r["tuner"] != "validate"]
    configs = [json.dumps(r["config"], sort_keys=True) for r in recs]
    assert len(recs) == 12 and len(set(configs)) == 12


@pytest.mark.parametrize("kind", ["opencl", "opengl"])
def test_tune_and_apply_on_device_targets(tmp_path, kind):
    import importlib

    try:
        usable, why = importlib.import_module(f"lathe.runtime.{kind}").status()
    except ImportError as err:
        pytest.skip(f"{kind}: {err}")
    if not usable:
        pytest.skip(f"{kind} unusable here: {why}")
    model, log = conv_model(), str(tmp_path / "log.jsonl")
    tasks = tasks_from_model(model, kind)
    assert tasks and {"threads"} <= set(tasks[0].space) if kind == "opencl" else {"unroll_k"} <= set(tasks[0].space)
    tune(tasks, log, trials=3, tuner="random", progress=False, timeout=120)
    recs = load_records(log)
    assert len(recs) >= 3 and all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    plain = lathe.compile(model, "llvm -threads=2").run({"x": _x()})[0]
    tuned = lathe.compile(model, kind, records=log).run({"x": _x()})[0]
    assert _rel_err(tuned, plain) <= 1e-3


def test_cli_tune(tmp_path, capsys):
    from lathe.cli import main

    path, log = str(tmp_path / "m.onnx"), str(tmp_path / "log.jsonl")
    onnx.save(conv_model(), path)
    assert main(["tune", path, "-t", "llvm -threads=2", "--trials", "3", "--log", log, "--tuner", "random"]) == 0
    out = capsys.readouterr().out
    assert "1 tunable kernels" in out and "records=" in out and "speed-up" in out
    assert len([r for r in load_records(log) if r["tuner"] not in ("validate", "model")]) == 3


def test_ray_runner_measures_on_a_local_cluster(tmp_path):
    """The distributed mode on a local Ray cluster: faults stay records, a tuning run logs and applies."""
    ray = pytest.importorskip("ray", reason="the Ray runner needs Ray (pip install lathe[distributed])")
    from lathe.tune.measure import RayRunner
    from lathe.tune.tuner import measure_many

    try:
        runner = RayRunner(cpus_per_candidate=1)
        model, log = conv_model(), str(tmp_path / "log.jsonl")
        (task,) = tasks_from_model(model, "llvm -threads=1")
        (ok, ref), = measure_many(task, [task.default], None, 60, runner)
        assert ok["status"] == "ok" and ok["min_s"] > 0
        crash, wrong = measure_many(task, [{**task.default, "_fault": "crash"}, {**task.default, "_fault": "wrong"}],
                                    ref, 60, runner)
        assert crash[0]["status"] == "error" and "SIGABRT" in crash[0]["error"] and wrong[0]["status"] == "wrong"
        tune([task], log, trials=4, tuner="random", progress=False, runner=runner)
        search = [r for r in load_records(log) if r["tuner"] != "validate"]  # the default, then 3 candidates
        assert len(search) == 4 and all(r["status"] == "ok" for r in search), search
        tuned = lathe.compile(model, "llvm -threads=1", records=log).run({"x": _x()})[0]
        assert _rel_err(tuned, lathe.compile(model, "llvm -threads=1").run({"x": _x()})[0]) <= TOL
    finally:
        ray.shutdown()
