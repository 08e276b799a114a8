"""ResNet-18 and EfficientNet-Lite0 (batch 1, fp32, 224x224): lathe `llvm` against ONNX Runtime, same run,
with 2 threads and with 1, plus lathe's per-kernel profile against each kernel's arithmetic floor.

    python bench/models.py [--runs 100] [--models resnet18,efficientnet_lite0] [--threads 2,1]

Saves bench/results/models-<time>.json and a bar chart models-<time>.png beside it. Before timing,
lathe's outputs are checked against ONNX Runtime's (max error relative to the largest output <= 1e-4).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import lathe  # noqa: E402
from bench.common import save  # noqa: E402
from lathe.benchmark import bench_model, fma_peak  # noqa: E402
from lathe.frontend.onnx import parse  # noqa: E402
from lathe.zoo import get_model  # noqa: E402


def check(proto, threads: int) -> float:
    import onnxruntime as ort

    mod = lathe.compile(proto, f"llvm -threads={threads}")
    x = np.random.default_rng(1).standard_normal(mod.spec["inputs"][0]["shape"]).astype("float32")
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {mod.input_names[0]: x})[0]
    got = mod.run({mod.input_names[0]: x})[0]
    return float(np.abs(got - want).max() / np.abs(want).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--models", default="resnet18,efficientnet_lite0")
    ap.add_argument("--threads", default="2,1")
    args = ap.parse_args()
    results: dict = {"runs": args.runs, "fma_peak_gflops": {}, "models": {}}
    for name in args.models.split(","):
        proto = parse(get_model(name))
        entry = results["models"][name] = {"max_rel_error_vs_ort": check(proto, 2)}
        print(f"{name}: lathe vs ONNX Runtime max relative error {entry['max_rel_error_vs_ort']:.1e}")
        assert entry["max_rel_error_vs_ort"] <= 1e-4
        for threads in (int(t) for t in args.threads.split(",")):
            res = bench_model(proto, ["llvm"], args.runs, threads, ["onnxruntime"])
            mod = lathe.compile(proto, f"llvm -threads={threads}")
            feed = {s["name"]: np.zeros(s["shape"], s["dtype"]) for s in mod.spec["inputs"]}
            peak = results["fma_peak_gflops"].setdefault(threads, fma_peak("llvm", threads))
            prof = mod.profile(feed, repeat=30)
            for r in prof:
                r["floor_ms"] = r["flops"] / peak / 1e6
            entry[f"{threads}_threads"] = {"results": res, "profile": prof}
            lat, ort = res["lathe llvm"], res["onnxruntime"]
            print(f"  {threads} thread(s): lathe {lat['median_ms']:.2f} ms (p10 {lat['p10_ms']:.2f}, "
                  f"p90 {lat['p90_ms']:.2f}), ONNX Runtime {ort['median_ms']:.2f} ms (p10 {ort['p10_ms']:.2f}, "
                  f"p90 {ort['p90_ms']:.2f}): ratio {lat['ratio_to_fastest_peer']:.2f}; floor at {peak:.0f} "
                  f"GFLOP/s {sum(r['floor_ms'] for r in prof):.2f} ms")
    path = save("models", results)
    print(f"saved {path}")
    plot(results, path[:-5] + ".png")


def plot(results: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    rows = [(f"{m}\n{k.replace('_', ' ')}", v["results"]) for m, e in results["models"].items()
            for k, v in e.items() if k.endswith("threads")]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.9 * len(rows)))
    y = np.arange(len(rows))
    for off, system, color in ((-0.2, "lathe llvm", "tab:blue"), (0.2, "onnxruntime", "tab:gray")):
        med = [r[system]["median_ms"] for _, r in rows]
        err = [[m - r[system]["p10_ms"] for m, (_, r) in zip(med, rows)],
               [r[system]["p90_ms"] - m for m, (_, r) in zip(med, rows)]]
        ax.barh(y + off, med, height=0.4, xerr=err, label=system, color=color)
    ax.set_yticks(y, [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms per image (median, p10-p90 whiskers)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
