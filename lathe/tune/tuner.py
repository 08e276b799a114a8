"""Search: random, grid, and an XGBoost cost model over IR features driving simulated annealing; the
tuning loop that measures candidates, logs every one, and resumes from the log."""

from __future__ import annotations

import json
import math
import os
import random
import time

import numpy as np

from lathe.tune.features import features
from lathe.tune.measure import REPEAT, LocalRunner, matches
from lathe.tune.records import append_record, best_records, load_records
from lathe.tune.task import Task


def _key(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


class RandomTuner:
    def __init__(self, task: Task, rng: random.Random, history=None):
        self.task, self.rng = task, rng

    def propose(self, n: int, measured: set) -> list[dict]:
        out: list[dict] = []
        tries = 0
        while len(out) < n and tries < 50 * n:
            tries += 1
            c = {k: self.rng.choice(v) for k, v in self.task.space.items()}
            if _key(c) not in measured and c not in out:
                out.append(c)
        return out

    def update(self, results: list[tuple[dict, float | None]]) -> None:
        pass


class GridTuner(RandomTuner):
    def propose(self, n: int, measured: set) -> list[dict]:
        return [c for c in self.task.all_configs() if _key(c) not in measured][:n]


class XGBTuner(RandomTuner):
    """Fits gradient-boosted trees to log GFLOP/s of every measured candidate (of this task and, through
    the task features, of every other task in `history`: transfer), then proposes the configs that
    simulated annealing finds best by the model's prediction."""

    def __init__(self, task: Task, rng: random.Random, history: list | None = None):
        super().__init__(task, rng)
        self.history = history if history is not None else []  # (feature vector, log gflops), shared by tasks
        self.model = None
        self._feat: dict[str, np.ndarray] = {}

    def feature(self, c: dict) -> np.ndarray:
        k = _key(c)
        if k not in self._feat:
            self._feat[k] = features(self.task, c, self.task.lower(c))
        return self._feat[k]

    def update(self, results: list[tuple[dict, float | None]]) -> None:
        for c, gflops in results:
            if gflops:
                self.history.append((self.feature(c), math.log(gflops)))
        if len(self.history) >= 4:
            import xgboost

            x = np.stack([f for f, _ in self.history])
            y = np.array([g for _, g in self.history])
            params = {"max_depth": 4, "eta": 0.2, "nthread": 1, "verbosity": 0}
            self.model = xgboost.train(params, xgboost.DMatrix(x, label=y), num_boost_round=60)

    def _predict(self, x: np.ndarray) -> np.ndarray:
        import xgboost

        return self.model.predict(xgboost.DMatrix(x))

    def propose(self, n: int, measured: set) -> list[dict]:
        if self.model is None:
            return super().propose(n, measured)
        names = list(self.task.space)
        current = [{k: self.rng.choice(self.task.space[k]) for k in names} for _ in range(4)]
        score = {}

        def predict(cs: list[dict]) -> list[float]:
            todo = [c for c in cs if _key(c) not in score]
            if todo:
                for c, p in zip(todo, self._predict(np.stack([self.feature(c) for c in todo]))):
                    score[_key(c)] = float(p)
            return [score[_key(c)] for c in cs]

        cur_scores = predict(current)
        steps = min(60, 2 * self.task.size())
        for step in range(steps):  # simulated annealing: mutate one knob, accept worse moves less as it cools
            temp = 0.3 * (1 - step / steps) + 1e-3
            nxt = []
            for c in current:
                k = self.rng.choice(names)
                nxt.append({**c, k: self.rng.choice(self.task.space[k])})
            for i, (c, s) in enumerate(zip(nxt, predict(nxt))):
                if s > cur_scores[i] or self.rng.random() < math.exp((s - cur_scores[i]) / temp):
                    current[i], cur_scores[i] = c, s
        ranked = sorted(score, key=score.get, reverse=True)
        out = [json.loads(k) for k in ranked if k not in measured][:n]
        return out + super().propose(n - len(out), measured | {_key(c) for c in out})


TUNERS = {"random": RandomTuner, "grid": GridTuner, "xgb": XGBTuner}


def measure(task: Task, values: dict, ref: list | None, timeout: float, runner=None) -> tuple[dict, list | None]:
    """One candidate's record (without run-level fields) and its outputs."""
    return measure_many(task, [values], ref, timeout, runner)[0]


def measure_many(task: Task, configs: list[dict], ref: list | None, timeout: float,
                 runner=None) -> list[tuple[dict, list | None]]:
    """Records and outputs of several candidates of one task, measured by `runner` (default: locally, in
    turn); each is timed alternately with the default schedule once a reference exists."""
    halos = [task.graph.values[v].halo for v in task.group.inputs() + task.group.outputs]
    baseline = task.lower(task.default) if ref is not None else None
    jobs = [(task.lower({k: v for k, v in values.items() if k != "_fault"}), str(task.target),
             len(task.group.outputs), halos, timeout, values.get("_fault"), REPEAT, baseline) for values in configs]
    out = []
    for values, (status, outs, times, err) in zip(configs, (runner or LocalRunner()).run(jobs)):
        if status == "ok" and ref is not None and not matches(outs, ref):
            status, err = "wrong", "outputs differ from the default schedule's"
        rec = {"workload": task.key, "config": values, "status": status, "error": err}
        if status == "ok":
            ratio = 1.0
            if baseline is not None:
                times, base = times
                ratio = float(np.median(np.array(times) / np.array(base)))
            rec.update(median_s=float(np.median(times)), min_s=float(min(times)),
                       gflops=task.flops / min(times) / 1e9, vs_default=ratio)
        out.append((rec, outs))
    return out


class _TaskState:
    """One task's progress in a tuning run: its measured configs, reference outputs and searcher."""

    def __init__(self, task: Task, quota: int, old: list[dict], search):
        self.task, self.quota, self.search = task, quota, search
        self.mine = [r for r in old if r["workload"] == task.key and r.get("tuner") not in ("validate", "model")]
        self.measured = {_key(r["config"]) for r in self.mine}
        self.ref = None
        ok = [r for r in self.mine if r["status"] == "ok"]
        if ok:
            search.update([(r["config"], r["gflops"]) for r in ok])

    def left(self) -> int:
        return 0 if len(self.measured) >= self.task.size() else max(0, self.quota - len(self.mine))

    def summary(self, log: str) -> dict:
        recs = [r for r in load_records(log) if r["workload"] == self.task.key]
        default = next((r["min_s"] for r in recs if r.get("tuner") == "default" and r["status"] == "ok"), None)
        best = best_records(recs).get(self.task.key)
        return {"task": self.task.name, "weight": self.task.weight, "trials": len(self.mine), "default_s": default,
                "best_s": default * best["vs_default"] if best and default else None,
                "best_config": best["config"] if best else None}


def validate_in_model(model, tasks: list[Task], log: str, rounds: int = 10) -> dict[str, float]:
    """Time the model with each task's best config (from the kernel measurements) against the untuned
    model, kernel by kernel inside whole runs, interleaved `rounds` times; log each changed task's
    in-model time ratio (tuner "model"), which then decides (records.best_records). A kernel timed
    alone runs with its weights and inputs hot in cache and no neighbours: faster there is not always
    faster in the model. Returns workload -> in-model ratio."""
    import lathe
    from lathe.frontend.onnx import load_onnx
    from lathe.graph.compiler import prepare_graph, workload_key

    target = tasks[0].target
    best = best_records([r for r in load_records(log) if r.get("tuner") != "model"])
    changed = {t.key: best[t.key]["config"] for t in tasks if t.key in best and best[t.key]["config"] != t.default}
    if not changed:
        return {}
    prepared, groups, _ = prepare_graph(load_onnx(model), target)
    keys = [workload_key(prepared, gr, target) for gr in groups]  # in the order of the modules' kernels
    mods = [lathe.compile(model, str(target)), lathe.compile(model, str(target), records=changed)]
    rng = np.random.default_rng(0)
    feed = {s["name"]: rng.standard_normal(s["shape"]).astype(s["dtype"]) for s in mods[0].spec["inputs"]}
    times = np.zeros((2, rounds, len(keys)))
    for r in range(rounds):
        for m, mod in enumerate(mods):
            times[m, r] = [row["ms"] for row in mod.profile(feed, repeat=3)]
    ratios = {}
    for key, config in changed.items():
        cols = [k for k, w in enumerate(keys) if w == key]
        ratios[key] = float(np.median(times[1][:, cols].sum(1) / times[0][:, cols].sum(1)))
        append_record(log, {"workload": key, "config": config, "status": "ok", "error": "", "tuner": "model",
                            "vs_default": ratios[key], "median_s": float(np.median(times[1][:, cols].sum(1))) / 1e3})
    return ratios


def tune(tasks: list[Task], log: str, trials: int, tuner: str = "xgb", budget_s: float | None = None,
         timeout: float = 30.0, batch: int = 4, progress: bool = True, seed: int = 0,
         validate: int = 3, runner=None, model=None) -> list[dict]:
    """Tune `tasks`, `trials` candidates in all shared by the tasks' share of the model's flops, in
    rounds of `batch` candidates per task (heaviest first), appending every measurement to `log`;
    configs already in the log are not measured again (a killed run resumes). Stops after `budget_s`.
    Then the default and the `validate` fastest configs of each task are measured twice more, and with
    `model` (what the tasks came from) each task's best config is timed inside the model (validate_in_model).
    `runner` measures each batch (measure.LocalRunner by default, measure.RayRunner for a cluster).
    Returns per task: name, default and best seconds (min of repeats), trials, best config."""
    start = time.perf_counter()
    old = load_records(log)
    elapsed0 = max((r.get("elapsed_s", 0.0) for r in old), default=0.0)
    total_work = sum(t.flops * t.weight for t in tasks) or 1
    rng, history = random.Random(seed), []  # history: every task's measurements, for the cost model
    states = [_TaskState(t, max(2, round(trials * t.flops * t.weight / total_work)), old,
                         TUNERS[tuner](t, rng, history)) for t in tasks]
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=sum(st.quota for st in states), desc="tuning", unit="trial",
                       initial=sum(min(len(st.mine), st.quota) for st in states))
        except ImportError:  # the bar is optional (pip install lathe[tune])
            pass

    def record(st: _TaskState, rec: dict, name: str, count: bool = True) -> None:
        # the 1-minute load average: on a shared machine, other work changes which schedule wins
        rec.update(tuner=name, elapsed_s=elapsed0 + time.perf_counter() - start, load=os.getloadavg()[0])
        append_record(log, rec)
        st.measured.add(_key(rec["config"]))
        if count:  # validation measurements do not use up trials
            st.mine.append(rec)
        if bar is not None and count:
            best = max((r.get("gflops", 0) for r in st.mine if r["status"] == "ok"), default=0)
            bar.set_postfix_str(f"{st.task.name[:40]} best {best:.1f} GFLOP/s")
            bar.update(1)

    def over_budget(validating: bool = False) -> bool:  # search stops at 85% of the budget, validation at 100%
        return budget_s is not None and time.perf_counter() - start > budget_s * (1.0 if validating else 0.85)

    while not over_budget() and any(st.left() for st in states):
        for st in states:
            if over_budget() or not st.left():
                continue
            if st.ref is None:  # the default's outputs are the reference (measured again on resume, logged once)
                rec, st.ref = measure(st.task, st.task.default, None, timeout, runner)
                if _key(st.task.default) not in st.measured:
                    record(st, rec, "default")
            results = []
            proposed = st.search.propose(min(batch, st.left()), st.measured)
            for values, (rec, _) in zip(proposed, measure_many(st.task, proposed, st.ref, timeout, runner)):
                record(st, rec, tuner)
                results.append((values, rec.get("gflops")))
            if results:
                st.search.update(results)
            elif st.left():
                st.quota = len(st.mine)  # the searcher has nothing new to offer
    for st in states:  # measure the default and the fastest few again, interleaved, against noise
        if over_budget(validating=True):
            break
        good = sorted((r for r in st.mine if r["status"] == "ok"), key=lambda r: r["vs_default"])
        finalists = [st.task.default] + [r["config"] for r in good if r["config"] != st.task.default][:validate]
        for _ in range(2 if len(finalists) > 1 else 0):
            for values in finalists:  # one at a time, on one machine: they are compared with each other
                rec, _ = measure(st.task, values, st.ref, timeout, runner if getattr(runner, "serial", False) else None)
                record(st, rec, "validate", count=False)
    if bar is not None:
        bar.close()
    if model is not None and tasks and tasks[0].target.family == "cpu":  # ~20 s for ResNet-18, even past the budget
        validate_in_model(model, tasks, log)
    return [st.summary(log) for st in states]
