"""ONNX backend node tests (a conformance suite written by others) run through lathe and ONNX Runtime.

    python tests/conformance.py [--target llvm] [--write docs/conformance.md]

The tests ship in the `onnx` wheel up to 1.22.0 (onnx/backend/test/data/node). We select those
whose operators are all in lathe's ONNX operator set and whose tensors are float32 or integer/bool,
run each through lathe and through ONNX Runtime, and compare with the expected outputs the
suite provides (rtol 1e-3, atol 1e-5; the ONNX backend runner's rtol).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

OP_SET = set("""Conv ConvTranspose BatchNormalization Relu LeakyRelu Clip Sigmoid HardSigmoid HardSwish Tanh Softmax
LogSoftmax Add Sub Mul Div Pow Sqrt Exp Log Neg Abs Erf MaxPool AveragePool GlobalAveragePool GlobalMaxPool Gemm MatMul
Flatten Reshape Transpose Concat Split Slice Squeeze Unsqueeze Pad Resize ReduceMean ReduceSum ReduceMax Cast Identity
Dropout Shape Gather Constant ConstantOfShape""".split())
ELEM_TYPES = {1, 2, 3, 6, 7, 9}  # float32, uint8, int8, int32, int64, bool
RTOL, ATOL = 1e-3, 1e-5


def data_root() -> str | None:
    import onnx

    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    return root if os.path.isdir(root) else None


def select_tests() -> list[str]:
    import onnx

    root = data_root()
    if root is None:
        return []
    chosen = []
    for d in sorted(glob.glob(os.path.join(root, "test_*"))):
        m = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
        if not {n.op_type for n in m.graph.node} <= OP_SET:
            continue
        types = {vi.type.tensor_type.elem_type for vi in list(m.graph.input) + list(m.graph.output)}
        if types <= ELEM_TYPES and all(vi.type.HasField("tensor_type") for vi in m.graph.input):
            chosen.append(d)
    return chosen


def load_case(d: str) -> tuple:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(d, "model.onnx"))
    data = os.path.join(d, "test_data_set_0")

    def read(prefix: str) -> list:
        out = []
        for f in sorted(glob.glob(os.path.join(data, f"{prefix}_*.pb")), key=lambda p: int(p.rsplit("_", 1)[1][:-3])):
            t = onnx.TensorProto()
            with open(f, "rb") as fh:
                t.ParseFromString(fh.read())
            out.append(numpy_helper.to_array(t))
        return out

    inputs = read("input")
    names = [vi.name for vi in model.graph.input if vi.name not in {i.name for i in model.graph.initializer}]
    return model, dict(zip(names, inputs)), read("output")


def compare(got: list, expected: list) -> str | None:
    if len(got) < len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        if g.shape != e.shape:
            return f"output {k}: shape {g.shape}, expected {e.shape}"
        if g.dtype != e.dtype:
            return f"output {k}: dtype {g.dtype}, expected {e.dtype}"
        try:
            np.testing.assert_allclose(g, e, rtol=RTOL, atol=ATOL, equal_nan=True)
        except AssertionError:
            err = np.max(np.abs(g.astype(np.float64) - e.astype(np.float64)))
            return f"output {k}: values differ (max abs error {err:.3g})"
    return None


def compile_time_inputs(model) -> set:
    """Graph inputs that land in an operand lathe needs at compile time (a shape, axes, pads, scales)."""
    from lathe.ops import OPS

    names = set()
    for n in model.graph.node:
        op = OPS.get(n.op_type)
        for pos, name in enumerate(n.input):
            if op is not None and pos in op.const_inputs:
                names.add(name)
    return names


def run_lathe(d: str, target: str) -> str | None:
    """None when the test passes, else the reason."""
    import lathe

    model, feed, expected = load_case(d)
    frozen = {k: feed.pop(k) for k in compile_time_inputs(model) & set(feed)}
    try:
        mod = lathe.compile(model, target, shapes={k: v.shape for k, v in feed.items()}, constants=frozen)
        got = mod.run(feed)
    except lathe.LatheError as err:
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return compare(got, expected)


def run_ort(d: str) -> str | None:
    import onnxruntime as ort

    model, feed, expected = load_case(d)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, feed)
    except Exception as err:  # ORT raises several unrelated exception types
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return compare(got, expected)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--write", help="write the report (Markdown) to this file")
    args = ap.parse_args()
    tests = select_tests()
    if not tests:
        print("no ONNX node tests found: install onnx==1.22.0", file=sys.stderr)
        return 1
    rows, t0 = [], time.time()
    for d in tests:
        rows.append((os.path.basename(d), run_ort(d), run_lathe(d, args.target)))
    ort_pass = sum(r[1] is None for r in rows)
    lathe_pass = sum(r[2] is None for r in rows)
    import onnx
    import onnxruntime

    lines = [
        "# ONNX conformance",
        "",
        f"The ONNX backend node tests (onnx {onnx.__version__}) whose operators are all in lathe's ONNX",
        "operator set and whose tensors are float32, int8/uint8/int32/int64 or bool: "
        f"**{len(rows)} tests**. Each runs through",
        f"lathe (`{args.target}`) and ONNX Runtime {onnxruntime.__version__} on the same machine, compared with the",
        f"suite's expected outputs (rtol {RTOL}, atol {ATOL}). Regenerate with",
        f"`python tests/conformance.py --target {args.target} --write docs/conformance.md`; `make test` runs the same",
        "tests (tests/test_onnx_conformance.py) and fails if a test listed as passing here stops passing.",
        "",
        "lathe compiles static shapes: where a test feeds a shape, axes, pads or scales as a run-time input,",
        "lathe receives that input's value at compile time (`lathe.compile(..., constants=...)`); ONNX",
        "Runtime gets it at run time.",
        "",
        "| runtime | passed | failed |",
        "| --- | --- | --- |",
        f"| lathe `{args.target}` | {lathe_pass} | {len(rows) - lathe_pass} |",
        f"| ONNX Runtime | {ort_pass} | {len(rows) - ort_pass} |",
        "",
        "## Tests lathe fails, with the reason",
        "",
    ]
    lines += [f"- `{name}`: {why}" for name, _, why in rows if why is not None] or ["(none)"]
    lines += ["", "## Tests ONNX Runtime fails, with the reason", ""]
    lines += [f"- `{name}`: {why}" for name, why, _ in rows if why is not None] or ["(none)"]
    report = "\n".join(lines) + "\n"
    print(f"lathe {lathe_pass}/{len(rows)}, ONNX Runtime {ort_pass}/{len(rows)} ({time.time() - t0:.0f} s)")
    if args.write:
        with open(args.write, "w") as fh:
            fh.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
