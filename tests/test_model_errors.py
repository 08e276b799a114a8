"""Bad models and bad inputs give one clear lathe error, never a crash or a deep traceback."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lathe

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model(nodes, inputs=(("x", (2, 3)),), outputs=("y",), inits=(), opset=17):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    g = helper.make_graph(nodes, "g", ins, outs, [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def good():
    return model([helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
                 inits=[("c", np.ones(3, np.float32))])


def test_good_model_runs():
    x = np.random.randn(2, 3).astype("float32")
    np.testing.assert_allclose(lathe.compile(good())(x), np.maximum(x + 1, 0), rtol=1e-6)


def test_truncated_file(tmp_path):
    data = good().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(lathe.ModelError, match="not a valid ONNX model|holds no ONNX graph"):
        lathe.compile(str(path))


def test_garbage_bytes_and_missing_file(tmp_path):
    with pytest.raises(lathe.ModelError):
        lathe.compile(b"\x00\xffthis is not onnx" * 10)
    with pytest.raises(lathe.ModelError, match="does not exist"):
        lathe.compile(str(tmp_path / "nope.onnx"))


def test_unsupported_operators_are_all_named_in_one_error():
    m = model([helper.make_node("NonMaxSuppression", ["x"], ["a"], name="nms"),
               helper.make_node("Einsum", ["a"], ["b"], equation="ij->ji"),
               helper.make_node("Relu", ["b"], ["y"])])
    with pytest.raises(lathe.ModelError) as err:
        lathe.compile(m)
    assert "NonMaxSuppression" in str(err.value) and "Einsum" in str(err.value) and "2 operator(s)" in str(err.value)


def test_wrong_input_name_shape_dtype_at_run_time():
    mod = lathe.compile(good())
    with pytest.raises(lathe.ArgumentError, match="not inputs of this model.*inputs are \\['x'\\]"):
        mod.run({"z": np.zeros((2, 3), np.float32)})
    with pytest.raises(lathe.ArgumentError, match="shape \\(3, 2\\).*compiled for \\(2, 3\\)"):
        mod.run({"x": np.zeros((3, 2), np.float32)})
    with pytest.raises(lathe.ArgumentError, match="dtype float64"):
        mod.run({"x": np.zeros((2, 3))})
    with pytest.raises(lathe.ArgumentError, match="takes 1 inputs"):
        mod()


def test_missing_initializer_names_the_node():
    m = model([helper.make_node("Add", ["x", "c"], ["y"], name="add1")])
    with pytest.raises(lathe.ModelError, match="add1.*'c'"):
        lathe.compile(m)


def test_cyclic_graph():
    m = model([helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2"),
               helper.make_node("Relu", ["a"], ["y"], name="n3")])
    with pytest.raises(lathe.ModelError, match="cycle"):
        lathe.compile(m)


def test_bad_shapes_name_node_and_shapes():
    m = model([helper.make_node("Add", ["x", "c"], ["y"], name="add1")], inits=[("c", np.ones(4, np.float32))])
    with pytest.raises(lathe.ModelError, match="add1.*\\(2, 3\\).*\\(4,\\)"):
        lathe.compile(m)


BASE = good().SerializeToString()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(BASE)))
def test_fuzzed_bytes_never_crash(edits, cut):
    """Byte mutations and truncations: either it compiles and runs, or a lathe error says why."""
    data = bytearray(BASE[:cut] if cut > 8 else BASE)
    for pos, byte in edits:
        if pos < len(data):
            data[pos] = byte
    try:
        mod = lathe.compile(bytes(data))
        feed = {s["name"]: np.zeros(s["shape"], s["dtype"]) for s in mod.spec["inputs"]}
        mod.run(feed)
    except lathe.LatheError:
        pass


def test_long_elementwise_chain_compiles_and_computes():
    """3,000 chained Adds: fusion caps a group's size, so no walk of the fused expression recurses too deep
    (before the cap, a 300-node chain raised RecursionError)."""
    from lathe.graph.passes import MAX_FUSED_NODES

    n = 3000
    nodes = [helper.make_node("Add", [f"t{k}" if k else "x", "c"], [f"t{k + 1}" if k < n - 1 else "y"])
             for k in range(n)]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
                          [numpy_helper.from_array(np.array(0.5, np.float32), "c")])
    mod = lathe.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert mod.stats["kernels"] == -(-n // MAX_FUSED_NODES)
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    np.testing.assert_allclose(mod(x), x + 0.5 * n, rtol=1e-5)


# Regression tests for what tests/fuzz_models.py found: one per bug class.

def _typed_model(nodes, dtype, shape=(6,), inputs="ab", inits=(), opset=17):
    ins = [helper.make_tensor_value_info(n, dtype, list(shape)) for n in inputs]
    g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", dtype, None)], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("elem_type", [TensorProto.INT4, TensorProto.UINT16, TensorProto.STRING,
                                       TensorProto.FLOAT8E5M2, 0, 99])
def test_unsupported_element_types_are_model_errors(elem_type):
    """An input or initializer of a type lathe does not compute with (a mutated data_type) raised ValueError."""
    with pytest.raises(lathe.ModelError, match="element type"):
        lathe.compile(_typed_model([helper.make_node("Neg", ["a"], ["y"])], elem_type, inputs="a"))
    w = onnx.TensorProto(name="w", data_type=elem_type, dims=[6], raw_data=bytes(6))
    with pytest.raises(lathe.ModelError, match="initializer 'w'.*element type"):
        lathe.compile(_typed_model([helper.make_node("Add", ["a", "w"], ["y"])], TensorProto.FLOAT, inputs="a",
                                   inits=[w]))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64"])
def test_integer_division_by_zero_and_min_over_minus_one_do_not_trap(dtype):
    """x/0 and MIN/-1 raised SIGFPE in the compiled kernel; now x/0 is 0 (as NumPy) and MIN/-1 wraps to MIN.
    uint8 division also divided as signed (249 // 2 gave 252)."""
    info = np.iinfo(dtype)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    mod = lathe.compile(_typed_model([helper.make_node("Div", ["a", "b"], ["y"])], elem, shape=(8,)))
    neg = -1 if info.min < 0 else 1
    a = np.array([7, -7 if info.min < 0 else 249, info.min, 5, info.max, 9, 0, info.max], dtype)
    b = np.array([0, 2, neg, 3, 0, -2 if info.min < 0 else 254, 0, neg], dtype)
    def trunc_div(x: int, y: int) -> int:  # in Python ints, wrapped to the dtype's range as the CPU does
        q = 0 if y == 0 else abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
        return (q - info.min) % (1 << info.bits) + info.min

    expected = np.array([trunc_div(int(x), int(y)) for x, y in zip(a, b)], dtype)
    np.testing.assert_array_equal(mod(a, b), expected)


@pytest.mark.parametrize("op,attr,value", [("Concat", "axis", float("inf")), ("Flatten", "axis", [1, 2]),
                                           ("Softmax", "axis", "x"), ("Gemm", "transB", 0.5)])
def test_attribute_of_the_wrong_type_names_node_and_attribute(op, attr, value):
    """axis=inf raised OverflowError from int(); attribute types are checked against ONNX's schema for the opset."""
    inputs = ["x", "w"] if op == "Gemm" else ["x"]
    m = model([helper.make_node(op, inputs, ["y"], name="bad", **{attr: value})], inputs=(("x", (2, 3)),),
              inits=[("w", np.ones((3, 3), np.float32))] if op == "Gemm" else ())
    with pytest.raises(lathe.ModelError, match=f"bad \\({op}, ONNX {op}-\\d+\\): attribute {attr} must be [A-Z]+, got"):
        lathe.compile(m)


def test_shape_node_with_bad_attributes_or_no_output():
    """Shape(start=[0]) raised TypeError and a Shape without outputs IndexError while folding."""
    m = model([helper.make_node("Shape", ["x"], ["s"], start=[0]), helper.make_node("Cast", ["s"], ["y"], to=1)])
    with pytest.raises(lathe.ModelError, match="Shape.*attribute start must be INT, got INTS"):
        lathe.compile(m)
    m = model([helper.make_node("Shape", ["x"], [], name="sh"), helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(lathe.ModelError, match="sh \\(Shape, ONNX Shape-15\\) takes 1 outputs"):
        lathe.compile(m)


def test_buffers_that_cannot_be_allocated_are_a_model_error(monkeypatch):
    """A model whose activations exceed the process's memory raised a bare MemoryError when its buffers were made,
    or when its outputs were copied out after a run."""
    from lathe.runtime import graph_module

    def refuse(shape, dtype):
        raise MemoryError("no room")

    mod = lathe.compile(good())
    monkeypatch.setattr(graph_module, "_aligned_empty", refuse)
    with pytest.raises(lathe.ModelError, match="buffers need about .* bytes"):
        lathe.compile(good())

    class NoRoomToCopy:  # NumPy, except that copying an output out fails (a 768 MiB Pad output did, fuzzing)
        def __getattr__(self, name):
            return getattr(np, name)

        def array(self, *args, **kwargs):
            raise MemoryError

    monkeypatch.setattr(graph_module, "np", NoRoomToCopy())
    with pytest.raises(lathe.ModelError, match="output 'y' \\(24 bytes\\) cannot be copied out"):
        mod(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("node,match", [
    (helper.make_node("Sub", ["x"], ["y"], name="n"), "n \\(Sub, ONNX Sub-14\\) takes 2 inputs"),
    (helper.make_node("MaxPool", [], ["y"], name="n", kernel_shape=[1]), "takes 1 inputs .*got \\[\\]"),
    (helper.make_node("Mul", ["x", "x", "x"], ["y"], name="n"), "takes 2 inputs"),
    (helper.make_node("Neg", ["x"], ["y", "z"], name="n"), "takes 1 outputs"),
    (helper.make_node("Relu", ["x"], ["y"], name="n", axis=1), "n \\(Relu, ONNX Relu-14\\) has no attribute 'axis'"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="n"), "required attribute\\(s\\) axis missing"),
    (helper.make_node("LeakyRelu", ["x"], ["y"], name="n", alpha=[1.0, 2.0]), "alpha must be FLOAT, got FLOATS"),
])
def test_node_arity_and_attributes_follow_the_onnx_schema(node, match):
    """Wrong input/output counts and unknown, missing or mistyped attributes raised IndexError, TypeError
    ('unexpected keyword argument') or ValueError from inside a compute; now one error naming node, op and schema."""
    with pytest.raises(lathe.ModelError, match=match):
        lathe.compile(model([node], inputs=(("x", (2, 3)),)))


def test_opset_below_one_is_refused():
    with pytest.raises(lathe.ModelError, match="opset versions start at 1"):
        lathe.compile(model([helper.make_node("Relu", ["x"], ["y"])], opset=-1))


def test_input_types_follow_the_onnx_schema():
    """Mixed float32/int64 operands and Exp of an int64 raised TypeError from the tensor expression's checks."""
    m = model([helper.make_node("Mul", ["x", "k"], ["y"], name="n")], inits=[("k", np.ones(3, np.int64))])
    with pytest.raises(lathe.ModelError, match="n \\(Mul, ONNX Mul-14\\): inputs 'x' \\(float32\\) and 'k' \\(int64\\) "
                                               "must have the same type"):
        lathe.compile(m)
    m = model([helper.make_node("Exp", ["k"], ["y"], name="n")], inits=[("k", np.ones(3, np.int64))])
    with pytest.raises(lathe.ModelError, match="input 0 \\('k'\\) is int64; it must be one of .*float"):
        lathe.compile(m)


def test_split_into_more_parts_than_elements_is_refused_fast():
    """Split(num_outputs=2**31-1) on 6 elements built two billion output expressions (a hang)."""
    import time

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("a", "b", "c")]
    for n in (2**31 - 1, 7, 0):
        g = helper.make_graph([helper.make_node("Split", ["x"], ["a", "b", "c"], name="s", num_outputs=n)], "g",
                              [x], outs)
        t0 = time.perf_counter()
        with pytest.raises(lathe.ModelError, match=f"s \\(Split\\).*num_outputs={n} must be between 1 and dim 0"):
            lathe.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
        assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
def test_reductions_of_a_scalar(op):
    """A rank-0 input reduced over all (no) axes built a reduction without reduce axes: StopIteration in lowering."""
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", 1, [])],
                          [helper.make_tensor_value_info("y", 1, None)])
    x = np.array(-2.5, np.float32)
    np.testing.assert_array_equal(lathe.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))(x),
                                  x)


def test_global_average_pool_of_no_elements_is_nan():
    """A zero-sized spatial extent raised ZeroDivisionError at import; NaN, as ReduceMean and NumPy's mean give."""
    m = model([helper.make_node("GlobalAveragePool", ["w"], ["y"])], inputs=(("x", (1,)),),
              inits=[("w", np.ones((1, 2, 0), np.float32))])
    assert np.isnan(lathe.compile(m)(np.ones(1, np.float32))).all()


def test_cubic_resize_of_four_axes_matches_the_onnx_reference():
    """256 taps per output (cubic on 4 axes) were summed left-deep: RecursionError in lowering. Now a balanced sum.
    (ONNX Runtime does cubic on two axes only, so the reference is onnx's own evaluator.)"""
    from onnx.reference import ReferenceEvaluator

    m = model([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="cubic")], inputs=(("x", (2, 3, 4, 4)),),
              inits=[("sizes", np.array([3, 2, 3, 5], np.int64))], opset=18)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    np.testing.assert_allclose(lathe.compile(m)(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scales,match", [([1, 1, 1e-6, 1e-6], "antialias at scale 1e-06 reads"),
                                          ([1, 1, float("nan"), 1], "must be positive and finite")])
def test_resize_scales_that_would_build_millions_of_taps_are_refused(scales, match):
    m = model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", antialias=1)],
              inputs=(("x", (1, 1, 4, 4)),), inits=[("scales", np.array(scales, np.float32))], opset=18)
    with pytest.raises(lathe.ModelError, match=match):
        lathe.compile(m)


def test_window_strides_beyond_int32_are_refused():
    """ConvTranspose with strides 2**62 compiled, then its bounds check wrapped and the kernel read far outside
    its input (SIGSEGV); Conv's and the pools' strides, dilations and padded extents are capped the same way."""
    w = np.ones((1, 1, 2, 2), np.float32)
    for op, attrs, match in [("ConvTranspose", {"strides": [2**62, 2**62]}, "strides=.* must lie in 1..2147483647"),
                             ("ConvTranspose", {"strides": [2**30, 2**30]}, "exceed 2147483647"),
                             ("Conv", {"pads": [2**62, 0, 2**62, 0]}, "padded input extents .* exceed 2147483647")]:
        m = model([helper.make_node(op, ["x", "w"], ["y"], name="n", **attrs)], inputs=(("x", (1, 1, 3, 3)),),
                  inits=[("w", w)])
        with pytest.raises(lathe.ModelError, match=f"n \\({op}\\).*{match}"):
            lathe.compile(m)


@pytest.mark.parametrize("where", ["node", "input"])
def test_names_that_are_not_utf8_are_model_errors(where):
    """A byte flip made a node name invalid UTF-8; protobuf returned it as bytes and ', '.join raised TypeError."""
    m = model([helper.make_node("Relu", ["x"], ["y"], name="QQQQ")]) if where == "node" else \
        model([helper.make_node("Relu", ["QQQQ"], ["y"])], inputs=(("QQQQ", (2, 3)),))
    data = m.SerializeToString().replace(b"QQQQ", b"\xff\xfe\xfd\xfc")
    with pytest.raises(lathe.ModelError, match="not valid UTF-8"):
        lathe.compile(data)
