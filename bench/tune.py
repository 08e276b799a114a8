"""Tune a model on the CPU under a time budget, then time untuned lathe, tuned lathe and ONNX Runtime
in one process (interleaved); write the time-to-quality curve as JSON and PNG under bench/results/.

    python -m bench.tune --model resnet18 --budget 600        # the 10-minute run (an idle machine, please)
    python -m bench.tune --log LOG --budget 0                  # time an existing log's records again

The curve's points before the end are estimates: the untuned model's measured latency minus, per
kernel, (default - best so far) x its count in the model, from the kernels' times in the log. The
last point is measured. TVM 0.27 MetaSchedule's published point for this kind of machine is drawn
beside it (577 trials, 747 s of tuning, 21.8 ms ResNet-18).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

from bench.common import RESULTS, interleaved, save, stats  # noqa: E402

BLOCKS = 10  # interleaved blocks of runs per system; tuned / untuned is compared block by block
TVM_METASCHEDULE = {"trials": 577, "tuning_s": 747.0, "resnet18_ms": 21.8}


def curve(records: list[dict], tasks: list, untuned_ms: float) -> list[tuple[float, float]]:
    """(seconds into tuning, estimated model ms) after every measurement."""
    from lathe.tune.records import best_records

    weight = {t.key: t.weight for t in tasks}
    seen: dict = {}
    saved: dict = {}
    points = []
    for r in sorted(records, key=lambda r: r.get("elapsed_s", 0.0)):
        w = r["workload"]
        seen.setdefault(w, []).append(r)
        default = [x for x in seen[w] if x.get("tuner") == "default" and x["status"] == "ok"]
        if default:  # what the records chosen so far (noise margin, validation) would save
            best = best_records(seen[w])[w]
            saved[w] = weight.get(w, 1) * default[0]["min_s"] * (1.0 - best["vs_default"])
        points.append((r.get("elapsed_s", 0.0), untuned_ms - 1e3 * sum(saved.values())))
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of tuning")
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--tuner", default="xgb", choices=("xgb", "random", "grid"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--log", help="records file (default: a new one under bench/results/)")
    args = ap.parse_args()

    import lathe
    from lathe.benchmark import peer_runner
    from lathe.cli import resolve_model
    from lathe.frontend.onnx import parse
    from lathe.tune import load_records
    from lathe.tune.task import tasks_from_model
    from lathe.tune.tuner import tune

    target = f"llvm -threads={args.threads}"
    log = args.log or os.path.join(RESULTS, f"tune-{args.model}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
    proto = parse(resolve_model(args.model))
    tasks = tasks_from_model(proto, target)
    t0 = time.perf_counter()
    summary = tune(tasks, log, args.trials, args.tuner, args.budget, model=proto)  # kernels run here only at its end
    tuning_s = time.perf_counter() - t0

    untuned, tuned = lathe.compile(proto, target), lathe.compile(proto, target, records=log)
    rng = np.random.default_rng(0)
    feed = {s["name"]: rng.standard_normal(s["shape"]).astype(s["dtype"]) for s in untuned.spec["inputs"]}
    want = untuned.run(feed)[0]
    err = float(np.abs(tuned.run(feed)[0] - want).max() / np.abs(want).max())
    systems = {"lathe untuned": untuned.bind(feed), "lathe tuned": tuned.bind(feed),
               "onnxruntime": peer_runner("onnxruntime", proto, feed, args.threads)}
    times = interleaved(systems, args.runs, blocks=BLOCKS)
    res = {k: stats(v) for k, v in times.items()}
    load = os.getloadavg()[0]  # above ~1 on 2 cores, other work shares them and the comparison is noisy
    per_block = {k: [np.median(b) for b in np.array_split(v, BLOCKS)] for k, v in times.items()}
    paired = np.array(per_block["lathe tuned"]) / np.array(per_block["lathe untuned"])  # same moments of load
    res["lathe tuned"]["vs_untuned_by_block"] = {"median": float(np.median(paired)), "min": float(paired.min()),
                                                 "max": float(paired.max())}
    ort = res["onnxruntime"]["median_ms"]
    for r in res.values():
        r["ratio_to_onnxruntime"] = r["median_ms"] / ort
    records = load_records(log)
    points = curve(records, tasks, res["lathe untuned"]["median_ms"])
    points.append((points[-1][0] if points else tuning_s, res["lathe tuned"]["median_ms"]))
    for name, r in res.items():
        print(f"{name:16s} {r['median_ms']:8.2f} ms (p10 {r['p10_ms']:.2f}, p90 {r['p90_ms']:.2f})  "
              f"vs ORT {r['ratio_to_onnxruntime']:.2f}")
    print(f"tuned / untuned, per interleaved block: median {np.median(paired):.3f} "
          f"(min {paired.min():.3f}, max {paired.max():.3f}, {BLOCKS} blocks)")
    print(f"1-minute load average after timing: {load:.2f}")
    print(f"tuned {len(records)} candidates in {tuning_s:.0f} s; tuned output vs untuned: relative error {err:.1e}")
    path = save(f"tune-{args.model}", {"model": args.model, "target": target, "tuner": args.tuner,
                                       "budget_s": args.budget, "tuning_s": tuning_s, "trials": len(records),
                                       "results": res, "curve": points, "tasks": summary, "log": log,
                                       "tvm_metaschedule": TVM_METASCHEDULE, "tuned_rel_err": err, "load_avg": load})
    print(f"saved {path}")
    plot(points, res, args, path.replace(".json", ".png"))


def plot(points: list, res: dict, args, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs, ys = zip(*points)
    ax.step(xs, ys, where="post", label=f"lathe {args.tuner} (estimated; last point measured)")
    ax.axhline(res["onnxruntime"]["median_ms"], color="gray", ls="--", label="ONNX Runtime (same run)")
    tvm = TVM_METASCHEDULE
    ax.scatter([tvm["tuning_s"]], [tvm["resnet18_ms"]], color="C3", zorder=3,
               label=f"TVM 0.27 MetaSchedule, {tvm['trials']} trials (published)")
    ax.set_xlabel("tuning seconds")
    ax.set_ylabel(f"{args.model} latency, ms ({args.threads} threads)")
    ax.set_title(f"time to quality: {args.model} on llvm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    print(f"saved {png}")


if __name__ == "__main__":
    main()
