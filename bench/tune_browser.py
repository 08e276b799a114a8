"""Tune a model for a browser target (webgpu, wasm, webgl) in headless Chromium, then time the untuned and the
tuned model in that same tab, in alternating rounds (their ratio survives other load on the machine).

    python -m bench.tune_browser --model resnet18 --target webgpu --budget 300   # --log FILE reuses records

The two models' outputs must agree (1e-3 of max |output|) before the times count.
Saves bench/results/tune-browser-<target>-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

from bench.common import RESULTS, save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--target", default="webgpu", choices=("webgpu", "wasm", "webgl"))
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of tuning (0: only time --log's records)")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds of --runs runs each")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--log", help="records file (default: a new one under bench/results/)")
    args = ap.parse_args()

    import lathe
    import lathe.rpc
    from lathe.cli import resolve_model
    from lathe.tune.measure import BrowserRunner
    from lathe.tune.task import tasks_from_model
    from lathe.tune.tuner import tune

    model = resolve_model(args.model)
    log = args.log or os.path.join(RESULTS, f"tune-browser-{args.target}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    session = lathe.rpc.browser()
    try:
        t0 = time.perf_counter()
        if args.budget > 0:
            tune(tasks_from_model(model, args.target), log, args.trials, budget_s=args.budget,
                 runner=BrowserRunner(session))
        tuning_s = time.perf_counter() - t0
        plain = lathe.compile(model, args.target).attach(session)
        tuned = lathe.compile(model, args.target, records=log).attach(session)
        spec = plain.spec["inputs"][0]
        feed = {spec["name"]: np.random.default_rng(0).standard_normal(spec["shape"]).astype(spec["dtype"])}
        want, got = plain.run(feed)[0], tuned.run(feed)[0]
        err = float(np.abs(got - want).max() / np.abs(want).max())
        assert err <= 1e-3, f"the tuned model's output differs from the untuned one's by {err:.3g}"
        times: dict[str, list] = {"untuned": [], "tuned": []}
        for _ in range(args.rounds):
            times["untuned"] += plain.benchmark(feed, repeat=args.runs, warmup=1)
            times["tuned"] += tuned.benchmark(feed, repeat=args.runs, warmup=1)
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(f"{args.model} on {args.target} in {session.info()['userAgent'].split(') ')[-1]}: untuned "
              f"{ms['untuned']:.2f} ms, tuned {ms['tuned']:.2f} ms (median of {len(times['tuned'])}), ratio "
              f"{ms['tuned'] / ms['untuned']:.3f}; {tuning_s:.0f} s of tuning, records {log}")
        print("saved", save(f"tune-browser-{args.target}", {
            "model": args.model, "target": args.target, "records": log, "tuning_s": tuning_s, "median_ms": ms,
            "tuned_over_untuned": ms["tuned"] / ms["untuned"], "max_rel_diff": err,
            "times_ms": {k: [1e3 * t for t in v] for k, v in times.items()}}))
    finally:
        session.close()


if __name__ == "__main__":
    main()
