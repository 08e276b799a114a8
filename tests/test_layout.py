"""The CPU layout pass (graph/layout.py) and the blocked operators (ops/layout.py) against ONNX Runtime.

Each model is compiled twice, with the blocked layout (the default on CPU targets) and with
`-layout=nchw`; both must match ONNX Runtime to 1e-5 relative to the largest output, and the
blocked build must really contain blocked kernels and only the layout transforms it needs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lathe
from lathe.graph.layout import channel_block
from lathe.ops.cpu import register_tile

TOL = 1e-5


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _model(nodes, x_shape, inits: dict, out: str = None) -> onnx.ModelProto:
    out = out or nodes[-1].output[0]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [onnx.ValueInfoProto(name=out)], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _check(model: onnx.ModelProto, x_shape, target: str = "llvm", tol: float = TOL) -> lathe.GraphModule:
    x = _rand(*x_shape, seed=7)
    sess = ort.InferenceSession(model.SerializeToString())
    want = sess.run(None, {"x": x})[0]
    blocked = None
    for layout in ("nchwc", "nchw"):
        mod = lathe.compile(model, f"{target} -threads=2 -layout={layout}")
        got = mod.run({"x": x})[0]
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        assert got.shape == want.shape and err <= tol, f"{layout}: relative error {err:.2e} > {tol}"
        blocked = blocked or mod
    return blocked


def _ops(mod) -> list:
    return [op for st in mod.spec["steps"] for op in st["ops"]]


def conv(name, x, w, out, b=None, **attrs):
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [out], name=name, **attrs)


CONVS = [  # (id, C, M, H, W, k, attrs, bias)
    ("3x3-pad", 16, 32, 9, 10, 3, {"pads": [1, 1, 1, 1]}, True),
    ("1x1", 32, 16, 7, 7, 1, {}, False),
    ("stride2", 16, 16, 11, 12, 3, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, True),
    ("asym-pads", 8, 16, 8, 9, 3, {"pads": [0, 1, 2, 1]}, False),
    ("dilation", 16, 16, 12, 12, 3, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, True),
    ("same-upper", 16, 24, 9, 9, 4, {"auto_pad": "SAME_UPPER"}, False),
    ("rgb-input", 3, 32, 16, 16, 7, {"pads": [3, 3, 3, 3], "strides": [2, 2]}, True),
    ("odd-in-channels", 5, 8, 6, 6, 3, {}, True),
    ("batch2", 16, 16, 5, 5, 3, {"pads": [1, 1, 1, 1]}, True),
]


@pytest.mark.parametrize("case", CONVS, ids=[c[0] for c in CONVS])
def test_dense_conv(case) -> None:
    cid, c, m, h, w, k, attrs, bias = case
    n = 2 if cid == "batch2" else 1
    inits = {"w": _rand(m, c, k, k, seed=1)}
    if bias:
        inits["b"] = _rand(m, seed=2)
    model = _model([conv("c", "x", "w", "y", "b" if bias else None, **attrs),
                    helper.make_node("Relu", ["y"], ["z"])], (n, c, h, w), inits)
    mod = _check(model, (n, c, h, w))
    assert _ops(mod).count("lathe.ConvNCHWc") == 1


@pytest.mark.parametrize("stride,c", [(1, 32), (2, 16), (1, 24)])
def test_depthwise_conv(stride: int, c: int) -> None:
    model = _model([conv("dw", "x", "w", "y", "b", group=c, pads=[1, 1, 1, 1], strides=[stride, stride]),
                    helper.make_node("Clip", ["y", "lo", "hi"], ["z"])], (1, c, 9, 9),
                   {"w": _rand(c, 1, 3, 3, seed=1), "b": _rand(c, seed=2), "lo": np.float32(0), "hi": np.float32(6)})
    assert "lathe.ConvNCHWc" in _ops(_check(model, (1, c, 9, 9)))


def test_resnet_block_keeps_one_layout_region() -> None:
    """conv-relu-conv-add(residual)-relu-maxpool-conv: one transform in (fused into the first conv's
    padding), one out at the end, none between."""
    inits = {f"w{i}": _rand(16, 16, 3, 3, seed=i) * 0.3 for i in range(3)}
    nodes = [conv("c0", "x", "w0", "a", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             conv("c1", "b", "w1", "c", pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "x2"], ["d"]),
             helper.make_node("Relu", ["d"], ["e"]),
             helper.make_node("MaxPool", ["e"], ["f"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             conv("c2", "f", "w2", "y", pads=[1, 1, 1, 1])]
    nodes.insert(0, helper.make_node("Relu", ["x"], ["x2"]))
    nodes[1].input[0] = "x2"
    mod = _check(_model(nodes, (1, 16, 10, 10), inits), (1, 16, 10, 10))
    ops = _ops(mod)
    assert ops.count("lathe.ToBlocked") == 1 and ops.count("lathe.FromBlocked") == 1, ops
    assert "lathe.MaxPoolNCHWc" in ops and ops.count("lathe.ConvNCHWc") == 3
    # the convolutions' inputs that kernels store live inside a 1-pixel zero border: no padded copies
    halos = {k: v["halo"] for k, v in mod.spec["values"].items() if v.get("halo")}
    assert set(halos.values()) == {1} and len(halos) >= 2, halos


@pytest.mark.parametrize("target", ["llvm", "c"])
def test_haloed_values_survive_save_and_load(tmp_path, target: str) -> None:
    inits = {f"w{i}": _rand(16, 16, 3, 3, seed=i) * 0.3 for i in range(3)}
    nodes = [conv("c0", "x", "w0", "a", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["b"]),
             conv("c1", "b", "w1", "c", pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "b"], ["d"]),
             conv("c2", "d", "w2", "y", pads=[2, 2, 2, 2], dilations=[2, 2])]
    model = _model(nodes, (1, 16, 8, 8), inits)
    mod = _check(model, (1, 16, 8, 8), target)
    assert sorted(v.get("halo", 0) for v in mod.spec["values"].values() if v.get("halo")) == [1, 2]
    x = _rand(1, 16, 8, 8, seed=3)
    want = mod.run({"x": x})[0]
    mod.save(str(tmp_path / "art"))
    again = lathe.load(str(tmp_path / "art"))
    for _ in range(2):  # a second run finds the borders still zero
        np.testing.assert_array_equal(again.run({"x": x})[0], want)


# Winograd F(m x m, 3x3) adds and subtracts scaled copies of the inputs before multiplying, so it rounds
# differently from a direct sum: ~1e-6 relative for m=2, a few 1e-6 for m=4 (float32)
WINOGRAD_TOL = 5e-5


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_matrices_compute_a_correlation(m: int) -> None:
    from lathe.ops.layout import WINOGRAD

    bt, g, at = (np.array(a, dtype=np.float64) for a in WINOGRAD[m])
    rng = np.random.default_rng(m)
    d, w = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
    got = at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[(d[i:i + 3, j:j + 3] * w).sum() for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


WINO = [  # (id, C, M, H, W, tile the layout pass should pick)
    ("f4-halo", 32, 32, 16, 16, 4),  # input stored with a zero border by the producing conv
    ("f2-rect", 32, 48, 16, 8, 2),  # 8 columns: too few for 4x4 tiles; 3 output blocks of 16
    ("f4-big-U", 96, 96, 16, 16, 4),  # U > 1 MiB: stages over the whole image, threads split the products
]


@pytest.mark.parametrize("target", ["llvm", "c"])
@pytest.mark.parametrize("case", WINO, ids=[c[0] for c in WINO])
def test_winograd_conv(case, target: str) -> None:
    """A 1x1 conv feeding a 3x3 'same' conv with bias + residual add + relu: the 3x3 one runs as Winograd
    (tile from the output's size) and matches ORT; the input conv runs direct."""
    _, c, m, h, w, tile = case
    inits = {"w0": _rand(c, c, 1, 1, seed=1), "w1": _rand(m, c, 3, 3, seed=2) * 0.2, "b1": _rand(m, seed=3)}
    nodes = [conv("c0", "x", "w0", "a"), conv("c1", "a", "w1", "b", "b1", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    mod = _check(_model(nodes, (1, c, h, w), inits), (1, c, h, w), target, tol=WINOGRAD_TOL)
    assert _ops(mod).count("lathe.ConvWinogradNCHWc") == 1 and _ops(mod).count("lathe.ConvNCHWc") == 1
    halo = [v.get("halo") for k, v in mod.spec["values"].items() if k.startswith("a:c")]
    assert halo == [1]  # the Winograd conv reads the border in place
    from lathe.graph.layout import winograd_tile
    from lathe.graph.ir import Node

    assert winograd_tile(Node("Conv", "c1", [], [], {"pads": [1] * 4}), inits["w1"], (h, w)) == tile


def test_winograd_reads_a_model_input_through_a_padded_copy() -> None:
    model = _model([conv("c", "x", "w", "y", pads=[1, 1, 1, 1])], (1, 32, 8, 8), {"w": _rand(32, 32, 3, 3, seed=4)})
    assert "lathe.ConvWinogradNCHWc" in _ops(_check(model, (1, 32, 8, 8), tol=WINOGRAD_TOL))


NOT_WINO = [("stride2", 32, 14, {"pads": [1] * 4, "strides": [2, 2]}), ("odd-7x7", 32, 7, {"pads": [1] * 4}),
            ("few-channels", 16, 16, {"pads": [1] * 4}), ("dilated", 32, 16, {"pads": [2] * 4, "dilations": [2, 2]}),
            ("valid", 32, 18, {})]


@pytest.mark.parametrize("case", NOT_WINO, ids=[c[0] for c in NOT_WINO])
def test_winograd_only_where_it_pays(case) -> None:
    _, c, h, attrs = case
    model = _model([conv("c", "x", "w", "y", **attrs)], (1, c, h, h), {"w": _rand(32, c, 3, 3, seed=5)})
    ops = _ops(_check(model, (1, c, h, h)))
    assert "lathe.ConvWinogradNCHWc" not in ops and "lathe.ConvNCHWc" in ops


POOLS = [("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
         ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
         ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
         ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
         ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1})]


@pytest.mark.parametrize("op,attrs", POOLS, ids=[f"{op}-{'-'.join(map(str, a))}" for op, a in POOLS])
def test_blocked_pools(op: str, attrs: dict) -> None:
    model = _model([conv("c", "x", "w", "y", pads=[1, 1, 1, 1]), helper.make_node(op, ["y"], ["z"], **attrs)],
                   (1, 8, 9, 9), {"w": _rand(16, 8, 3, 3, seed=1)})
    assert f"lathe.{op}NCHWc" in _ops(_check(model, (1, 8, 9, 9)))


def test_unblockable_channels_stay_nchw() -> None:
    """M = 6 has no vector-sized block: the conv stays NCHW and no transform is added."""
    model = _model([conv("c", "x", "w", "y", pads=[1, 1, 1, 1])], (1, 4, 6, 6), {"w": _rand(6, 4, 3, 3)})
    ops = _ops(_check(model, (1, 4, 6, 6)))
    assert ops == ["Conv"]


def test_layout_on_c_target() -> None:
    model = _model([conv("c", "x", "w", "y", "b", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["y"], ["z"])],
                   (1, 8, 6, 6), {"w": _rand(16, 8, 3, 3, seed=1), "b": _rand(16, seed=2)})
    try:
        assert "lathe.ConvNCHWc" in _ops(_check(model, (1, 8, 6, 6), target="c"))
    except lathe.TargetError as err:
        pytest.skip(f"c target unavailable: {err}")


def test_block_and_tile_choices() -> None:
    assert channel_block(64, 16) == 16 and channel_block(24, 16) == 8 and channel_block(6, 16) is None
    assert channel_block(24, 8) == 8 and channel_block(12, 8) == 4
    cb, wt = register_tile(4, 56, 32)
    assert 4 % cb == 0 and 56 % wt == 0 and cb * wt <= 16
    assert register_tile(32, 7, 32) == (2, 7)
    assert register_tile(1, 13, 16) == (1, 1)  # 13 is prime and above the budget: one pixel per step
