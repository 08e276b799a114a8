"""ResNet-18 and EfficientNet-Lite0 on the GPU back ends: lathe `cuda`, `opencl` and `opengl`, each checked against
ONNX Runtime (CPU) and timed (mean and median of --runs after warm-up, outputs read back every run), and
PyTorch's ResNet-18 (eager, torch.compile, CUDA graphs) in the same run when torch is installed.

    python bench/gpu.py [--runs 100] [--targets cuda,opencl,opengl] [--models resnet18,efficientnet_lite0]

Run on the GPU machine (see shared/device/README.md); saves bench/results/gpu-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import lathe  # noqa: E402
from bench.common import save  # noqa: E402
from lathe.frontend.onnx import parse  # noqa: E402
from lathe.zoo import get_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--targets", default="cuda,opencl,opengl")
    ap.add_argument("--models", default="resnet18,efficientnet_lite0")
    args = ap.parse_args()
    import onnxruntime as ort

    results: dict = {"runs": args.runs, "models": {}}
    for name in args.models.split(","):
        proto = parse(get_model(name))
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32")
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        for target in args.targets.split(","):
            entry = results["models"].setdefault(name, {})
            try:
                t0 = time.perf_counter()
                mod = lathe.compile(proto, target)
                compile_s = time.perf_counter() - t0
                feed = {mod.input_names[0]: x}
                got = mod.run(feed)[0]
            except lathe.LatheError as err:
                entry[target] = {"error": str(err)}
                print(f"{name} {target}: {err}")
                continue
            err = float(np.abs(got - want).max() / np.abs(want).max())
            for _ in range(10):
                mod.run(feed)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                mod.run(feed)
                times.append(time.perf_counter() - t0)
            t = np.array(times) * 1e3
            entry[target] = {"max_rel_error_vs_ort": err, "compile_s": compile_s, "mean_ms": float(t.mean()),
                             "median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
                             "p90_ms": float(np.percentile(t, 90))}
            print(f"{name} {target}: rel err {err:.1e}, mean {t.mean():.2f} ms, median {np.median(t):.2f} ms "
                  f"(compile {compile_s:.1f} s)")
    if "resnet18" in results["models"]:
        results["models"]["resnet18"].update(torch_peers(args.runs))
    print(f"saved {save('gpu', results)}")


def torch_peers(runs: int) -> dict:
    """torchvision's ResNet-18 (random weights: timing only) in eager mode, torch.compile and CUDA graphs
    (torch.compile mode="reduce-overhead"), fp32 with TF32 off, timed like lathe (output read back)."""
    try:
        import torch
        import torchvision
    except ImportError as err:
        print(f"no PyTorch peers: {err}")
        return {}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = torchvision.models.resnet18().eval().cuda()
    x = torch.randn(1, 3, 224, 224, device="cuda")
    out = {}
    for name, fn in (("torch eager", model), ("torch.compile", torch.compile(model)),
                     ("torch CUDA graphs", torch.compile(model, mode="reduce-overhead"))):
        with torch.no_grad():
            for _ in range(20):
                fn(x).cpu()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn(x).cpu()
                times.append(time.perf_counter() - t0)
        t = np.array(times) * 1e3
        out[name] = {"mean_ms": float(t.mean()), "median_ms": float(np.median(t)),
                     "p10_ms": float(np.percentile(t, 10)), "p90_ms": float(np.percentile(t, 90))}
        print(f"resnet18 {name}: mean {t.mean():.2f} ms, median {np.median(t):.2f} ms")
    return out


if __name__ == "__main__":
    main()
