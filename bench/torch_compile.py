"""PyTorch's ways to run a model against lathe's, in one process: eager, torch.compile (inductor),
torch.compile(backend="lathe") and lathe.compile(module), on the zoo's nn.Modules (batch 1, fp32).

    python bench/torch_compile.py [--runs 100] [--threads 2] [--models resnet18,efficientnet_lite0]

Every system's output is first checked against eager PyTorch (max error relative to the largest output
<= 1e-4); then median, p10 and p90 of --runs calls, interleaved in blocks. Saves
bench/results/torch-compile-<time>.json with each system's ratio to eager.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import lathe  # noqa: E402
from bench.common import interleaved, save, stats  # noqa: E402
from lathe.zoo import cat_image, preprocess, torch_models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="resnet18,efficientnet_lite0")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(preprocess(cat_image()))
    results: dict = {"runs": args.runs, "threads": args.threads, "models": {}}
    for name in args.models.split(","):
        net = torch_models.MODULES[name]()
        direct = lathe.compile(net, f"llvm -threads={args.threads}", example_inputs=(x,))
        torch._dynamo.reset()
        systems = {"torch eager": net, "torch.compile (inductor)": torch.compile(net),
                   "torch.compile (lathe)": torch.compile(net, backend="lathe"),
                   "lathe.compile(module)": lambda t: torch.from_numpy(direct(t.numpy()))}
        with torch.inference_mode():
            want = net(x).numpy()
            errors = {}
            for label, fn in systems.items():  # the first call compiles: never timed
                got = np.asarray(fn(x))
                errors[label] = float(np.abs(got - want).max() / np.abs(want).max())
                assert errors[label] <= 1e-4, f"{label}: error {errors[label]:.2e} against eager"
            res = {k: stats(v) for k, v in interleaved({k: (lambda f=f: f(x)) for k, f in systems.items()},
                                                       args.runs).items()}
        eager = res["torch eager"]["median_ms"]
        print(f"{name} ({args.threads} threads, median of {args.runs}):")
        for label, r in res.items():
            r["ratio_to_eager"], r["max_rel_error"] = r["median_ms"] / eager, errors[label]
            print(f"  {label:26s} {r['median_ms']:8.2f} ms  p10 {r['p10_ms']:6.2f}  p90 {r['p90_ms']:6.2f}  "
                  f"x{r['ratio_to_eager']:.2f} of eager")
        results["models"][name] = res
    print("saved", save("torch-compile", results))


if __name__ == "__main__":
    main()
