"""`make demo`: EfficientNet-Lite0 (ImageNet weights) classifies the sample cat on every backend this
machine has, with ONNX Runtime's answer on the same graph beside it."""

import time

import numpy as np

import lathe
from lathe import zoo
from lathe.cli import softmax, target_status


def top5(logits: np.ndarray) -> list:
    p = softmax(logits.astype(np.float64))[0]
    return [(int(k), float(p[k])) for k in np.argsort(-p)[:5]]


def main() -> None:
    labels = zoo.imagenet_labels()
    model = zoo.efficientnet_lite0()
    x = zoo.preprocess(zoo.cat_image())
    rows = []
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"input": x})[0]
        t0 = time.perf_counter()
        for _ in range(10):
            sess.run(None, {"input": x})
        rows.append(("onnxruntime", top5(ref), (time.perf_counter() - t0) / 10, None))
    except ImportError:
        ref = None
    status = target_status()
    print("not on this machine: " + ", ".join(kind for kind, ok, _ in status if not ok) + " (`lathe targets` says why)")
    for kind, ok, _ in status:
        if not ok:
            continue
        mod = lathe.compile(model, kind)
        out = mod(x)
        times = mod.benchmark({"input": x}, repeat=3 if kind == "webgl" else 10)  # SwiftShader: seconds a run
        diff = None if ref is None else float(np.max(np.abs(softmax(out) - softmax(ref))))
        rows.append((f"lathe {kind}", top5(out), float(np.median(times)), diff))
    print(f"\n{'backend':14s} {'top-1':14s} {'p':>7s}  {'2nd':14s} {'p':>7s}  {'3rd':10s} {'p':>7s}  "
          f"{'max |dp| vs ORT':>16s} {'ms':>8s}")
    for name, top, secs, diff in rows:
        cells = "  ".join(f"{labels[k][:14]:14s} {p:7.4f}" for k, p in top[:3])
        print(f"{name:14s} {cells}  {'' if diff is None else f'{diff:.1e}':>16s} {secs * 1e3:8.1f}")


if __name__ == "__main__":
    main()
