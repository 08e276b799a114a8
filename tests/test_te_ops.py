"""Operators written as tensor expressions, scheduled, built for every target and compared with NumPy.

Tolerance: float32 kernels against float64 NumPy, rtol=1e-5 and atol=1e-5 (conftest.RTOL/ATOL), tightened
to atol=1e-6 for single intrinsics and softmax (values of order 1, no long sums); integer kernels and casts
must match exactly.
"""

import math

import numpy as np
import pytest

import lathe
from conftest import random_array
from lathe import te

N, M = 5, 7  # a small 2-D shape whose extents no vector width divides
VECTOR_MODES = ["scalar", "split4", "row"]


def schedule_rows(T, mode):
    """T's default schedule ("scalar"); rows in vectors of 4 with a tail ("split4", M = 7);
    or each whole row as one 7-lane vector ("row")."""
    s = te.create_schedule(T)
    if mode == "split4":
        s[T].vectorize(s[T].split(T.op.axis[1], factor=4)[1])
    elif mode == "row":
        s[T].vectorize(T.op.axis[1])
    return s


# ----------------------------------------------------------------------------- elementwise

# name: (te function, NumPy reference, input range)
UNARY = {
    "exp": (te.exp, np.exp, (-3, 3)),
    "log": (te.log, np.log, (0.1, 5)),
    "sqrt": (te.sqrt, np.sqrt, (0, 5)),
    "tanh": (te.tanh, np.tanh, (-3, 3)),
    "erf": (te.erf, np.vectorize(math.erf), (-2.5, 2.5)),
    "abs": (te.abs, np.abs, (-3, 3)),
    "floor": (te.floor, np.floor, (-4, 4)),
    "ceil": (te.ceil, np.ceil, (-4, 4)),
    "sigmoid": (te.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-4, 4)),
    "rsqrt": (te.rsqrt, lambda x: 1 / np.sqrt(x), (0.2, 5)),
    "neg": (lambda x: -x, np.negative, (-3, 3)),
}


@pytest.mark.parametrize("mode", VECTOR_MODES)
@pytest.mark.parametrize("name", UNARY)
def test_unary(name, mode, check, rng):
    fte, fnp, (low, high) = UNARY[name]
    A = te.placeholder((N, M), name="A")
    B = te.compute((N, M), lambda i, j: fte(A[i, j]), name="B")
    a = random_array(rng, (N, M), low=low, high=high)
    check(schedule_rows(B, mode), [A, B], [a], [fnp(a.astype("float64"))], atol=1e-6)


BINARY = {
    "add": (lambda a, b: a + b, np.add, (-2, 2)),
    "sub": (lambda a, b: a - b, np.subtract, (-2, 2)),
    "mul": (lambda a, b: a * b, np.multiply, (-2, 2)),
    "div": (lambda a, b: a / b, np.divide, (0.5, 2)),
    "pow": (te.pow, np.power, (0.5, 2)),
    "max": (te.max, np.maximum, (-2, 2)),
    "min": (te.min, np.minimum, (-2, 2)),
    "scalar_mix": (lambda a, b: 2.0 * a - b / 4.0 + 1.0, lambda a, b: 2 * a - b / 4 + 1, (-2, 2)),
}


@pytest.mark.parametrize("mode", VECTOR_MODES)
@pytest.mark.parametrize("name", BINARY)
def test_binary(name, mode, check, rng):
    fte, fnp, (low, high) = BINARY[name]
    A = te.placeholder((N, M), name="A")
    B = te.placeholder((N, M), name="B")
    C = te.compute((N, M), lambda i, j: fte(A[i, j], B[i, j]), name="C")
    a, b = (random_array(rng, (N, M), low=low, high=high) for _ in range(2))
    check(schedule_rows(C, mode), [A, B, C], [a, b], [fnp(a.astype("float64"), b.astype("float64"))])


SELECTS = {
    "leaky_relu": (lambda A, i, j: te.if_then_else(A[i, j] > 0, A[i, j], A[i, j] * 0.1),
                   lambda a, ii, jj: np.where(a > 0, a, a * 0.1)),
    "all_of_indices": (lambda A, i, j: te.if_then_else(te.all(i > 0, j < 4, i != j), A[i, j], -1.0),
                       lambda a, ii, jj: np.where((ii > 0) & (jj < 4) & (ii != jj), a, -1)),
    "any_of_indices": (lambda A, i, j: te.if_then_else(te.any(i == 2, j >= 5), 3.0, A[i, j]),
                       lambda a, ii, jj: np.where((ii == 2) | (jj >= 5), 3, a)),
    "nested": (lambda A, i, j: te.if_then_else(A[i, j] < -0.5, 0.0,
                                               te.if_then_else(A[i, j] > 0.5, 1.0, A[i, j])),
               lambda a, ii, jj: np.where(a < -0.5, 0, np.where(a > 0.5, 1, a))),
}


@pytest.mark.parametrize("mode", VECTOR_MODES)
@pytest.mark.parametrize("name", SELECTS)
def test_if_then_else(name, mode, check, rng):
    fte, fnp = SELECTS[name]
    A = te.placeholder((N, M), name="A")
    B = te.compute((N, M), lambda i, j: fte(A, i, j), name="B")
    a = random_array(rng, (N, M))
    ii, jj = np.indices((N, M))
    check(schedule_rows(B, mode), [A, B], [a], [fnp(a, ii, jj)])


CASTS = [  # (source dtype, destination dtype, input range, use .astype instead of te.cast)
    ("float32", "int32", (-9.9, 9.9), False),  # truncates toward zero, like C and NumPy
    ("float32", "int32", (-9.9, 9.9), True),
    ("int32", "float32", (-1000, 1000), True),
    ("int32", "float32", (-1000, 1000), False),
]


@pytest.mark.parametrize("mode", VECTOR_MODES)
@pytest.mark.parametrize("src,dst,limits,method", CASTS)
def test_cast(src, dst, limits, method, mode, check, rng):
    A = te.placeholder((N, M), dtype=src, name="A")
    convert = (lambda x: x.astype(dst)) if method else (lambda x: te.cast(x, dst))
    B = te.compute((N, M), lambda i, j: convert(A[i, j]), name="B")
    a = random_array(rng, (N, M), src, *limits)
    out, = check(schedule_rows(B, mode), [A, B], [a], [a.astype(dst)], rtol=0, atol=0)
    assert out.dtype == np.dtype(dst)


def test_cast_mixed_into_float_arithmetic(check, rng):
    A = te.placeholder((N, M), dtype="int32", name="A")
    B = te.placeholder((N, M), name="B")
    C = te.compute((N, M), lambda i, j: A[i, j].astype("float32") * B[i, j] + te.cast(i * M + j, "float32"), name="C")
    a, b = random_array(rng, (N, M), "int32", -50, 50), random_array(rng, (N, M))
    check(te.create_schedule(C), [A, B, C], [a, b], [a * b.astype("float64") + np.arange(N * M).reshape(N, M)])


# int32 `//` and `%` follow Python: floor division, and a remainder with the divisor's sign.
# Each op reads A (values in -40..40) and B (nonzero, -7..7, both signs); the same lambda runs on
# te expressions and on int64 NumPy arrays.
INT_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "floormod": lambda a, b: a % b,
    "floordiv_by_3": lambda a, b: a // 3 - b,
    "floormod_by_3": lambda a, b: a % 3 - b,
    "floordiv_by_minus_4": lambda a, b: a // -4 - b,
    "floormod_by_minus_4": lambda a, b: a % -4 - b,
    "constant_over_b": lambda a, b: 17 // b + 17 % b * 100 + a,
    "mixed": lambda a, b: (a * 7 - b) // 5 + a % b * 3,
}
INT_NUMPY_ONLY = {"max": (te.max, np.maximum), "min": (te.min, np.minimum),
                  "abs": (lambda a, b: te.abs(a) + b, lambda a, b: np.abs(a) + b)}


@pytest.mark.parametrize("mode", VECTOR_MODES)
@pytest.mark.parametrize("name", [*INT_OPS, *INT_NUMPY_ONLY])
def test_int32_arithmetic(name, mode, check, rng):
    fte, fnp = INT_NUMPY_ONLY.get(name, (INT_OPS.get(name), INT_OPS.get(name)))
    A = te.placeholder((N, M), dtype="int32", name="A")
    B = te.placeholder((N, M), dtype="int32", name="B")
    C = te.compute((N, M), lambda i, j: fte(A[i, j], B[i, j]), name="C")
    a = random_array(rng, (N, M), "int32", -40, 40)
    b = random_array(rng, (N, M), "int32", -7, 7)
    b[b == 0] = 5  # no division by zero; both signs of divisor stay
    expected = fnp(a.astype("int64"), b.astype("int64")).astype("int32")
    out, = check(schedule_rows(C, mode), [A, B, C], [a, b], [expected], rtol=0, atol=0)
    assert out.dtype == np.int32


def test_floor_division_on_negative_loop_indices(check):
    """Index arithmetic with // and % on expressions that go negative (i - 6 over 0..11)."""
    C = te.compute((12, 3), lambda i, j: (i - 6 - j) // 4 * 10 + (i - 6 - j) % 4, name="C")
    ii, jj = np.indices((12, 3))
    check(te.create_schedule(C), [C], [], [((ii - 6 - jj) // 4 * 10 + (ii - 6 - jj) % 4).astype("int32")],
          rtol=0, atol=0)


def test_broadcast_add(check, rng):
    A = te.placeholder((N, M), name="A")
    b_vec = te.placeholder((M,), name="bias")
    C = te.compute((N, M), lambda i, j: A[i, j] + b_vec[j], name="C")
    a, b = random_array(rng, (N, M)), random_array(rng, (M,))
    check(te.create_schedule(C), [A, b_vec, C], [a, b], [a + b])


# ----------------------------------------------------------------------------- reductions

REDUCERS = {"sum": (te.sum, np.sum), "max": (te.max, np.max), "min": (te.min, np.min)}


@pytest.mark.parametrize("reducer", REDUCERS)
@pytest.mark.parametrize("axis", [0, 1])
def test_reduce_one_axis(reducer, axis, check, rng):
    fte, fnp = REDUCERS[reducer]
    A = te.placeholder((6, 9), name="A")
    k = te.reduce_axis((0, A.shape[axis]), name="k")
    if axis == 1:
        R = te.compute((6,), lambda i: fte(A[i, k], axis=k), name="R")
    else:
        R = te.compute((9,), lambda j: fte(A[k, j], axis=k), name="R")
    a = random_array(rng, (6, 9))
    check(te.create_schedule(R), [A, R], [a], [fnp(a.astype("float64"), axis=axis)])


@pytest.mark.parametrize("reducer", REDUCERS)
def test_reduce_two_axes(reducer, check, rng):
    fte, fnp = REDUCERS[reducer]
    A = te.placeholder((4, 5, 6), name="A")
    k1, k2 = te.reduce_axis(5, "k1"), te.reduce_axis(6, "k2")
    R = te.compute((4,), lambda i: fte(A[i, k1, k2], axis=[k1, k2]), name="R")
    a = random_array(rng, (4, 5, 6))
    check(te.create_schedule(R), [A, R], [a], [fnp(a.astype("float64"), axis=(1, 2))])


@pytest.mark.parametrize("reducer", REDUCERS)
def test_reduce_axis_with_nonzero_start(reducer, check, rng):
    fte, fnp = REDUCERS[reducer]
    A = te.placeholder((4, 9), name="A")
    k = te.reduce_axis((3, 8), name="k")
    R = te.compute((4,), lambda i: fte(A[i, k], axis=k), name="R")
    a = random_array(rng, (4, 9))
    check(te.create_schedule(R), [A, R], [a], [fnp(a[:, 3:8].astype("float64"), axis=1)])


def test_sum_where_on_data(check, rng):
    A = te.placeholder((6, 9), name="A")
    k = te.reduce_axis(9, "k")
    R = te.compute((6,), lambda i: te.sum(A[i, k], axis=k, where=A[i, k] > 0), name="R")
    a = random_array(rng, (6, 9))
    check(te.create_schedule(R), [A, R], [a], [np.where(a > 0, a, 0).sum(axis=1)])


def test_sum_where_on_indices_is_triangular(check, rng):
    A = te.placeholder((7, 7), name="A")
    k = te.reduce_axis(7, "k")
    R = te.compute((7,), lambda i: te.sum(A[i, k], axis=k, where=k <= i), name="R")
    a = random_array(rng, (7, 7))
    check(te.create_schedule(R), [A, R], [a], [np.tril(a).sum(axis=1)])


def test_int32_sum(check, rng):
    A = te.placeholder((5, 11), dtype="int32", name="A")
    k = te.reduce_axis(11, "k")
    R = te.compute((5,), lambda i: te.sum(A[i, k] * 3, axis=k), name="R")
    a = random_array(rng, (5, 11), "int32", -100, 100)
    check(te.create_schedule(R), [A, R], [a], [(a * 3).sum(axis=1).astype("int32")], rtol=0, atol=0)


# ----------------------------------------------------------------------------- matmul


def matmul(n, m, k_len, dtype="float32"):
    A = te.placeholder((n, k_len), dtype=dtype, name="A")
    B = te.placeholder((k_len, m), dtype=dtype, name="B")
    k = te.reduce_axis((0, k_len), name="k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return A, B, C


def sched_naive(s, C):
    pass


def sched_tiled(s, C, bn=8, bm=8, bk=4):
    """Tile i/j, split k, vectorize the innermost j loop, run the outer i tiles in parallel."""
    i, j = C.op.axis
    (k,) = C.op.reduce_axis
    io, jo, ii, ji = s[C].tile(i, j, bn, bm)
    ko, ki = s[C].split(k, factor=bk)
    s[C].reorder(io, jo, ko, ki, ii, ji)
    s[C].vectorize(ji)
    s[C].parallel(io)


def sched_tiled_odd(s, C):
    sched_tiled(s, C, bn=7, bm=5, bk=3)  # none divides 64, 48 or 40


def sched_fused_parallel(s, C):
    i, j = C.op.axis
    f = s[C].fuse(i, j)
    fo, fi = s[C].split(f, factor=16)
    s[C].parallel(fo)
    s[C].unroll(fi)


MATMUL_SCHEDULES = {"naive": sched_naive, "tiled": sched_tiled, "tiled_odd": sched_tiled_odd,
                    "fused_parallel": sched_fused_parallel}


@pytest.mark.parametrize("schedule", MATMUL_SCHEDULES)
def test_matmul(schedule, check, rng):
    A, B, C = matmul(64, 48, 40)
    s = te.create_schedule(C)
    MATMUL_SCHEDULES[schedule](s, C)
    a, b = random_array(rng, (64, 40)), random_array(rng, (40, 48))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b])


def test_matmul_parallel_with_two_threads(target, check, rng):
    A, B, C = matmul(33, 20, 12)
    s = te.create_schedule(C)
    sched_tiled_odd(s, C)
    a, b = random_array(rng, (33, 12)), random_array(rng, (12, 20))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b], target_string=f"{target} -threads=2")


def test_int32_matmul(check, rng):
    A, B, C = matmul(9, 10, 11, dtype="int32")
    s = te.create_schedule(C)
    sched_tiled(s, C, 4, 4, 4)
    a, b = random_array(rng, (9, 11), "int32", -20, 20), random_array(rng, (11, 10), "int32", -20, 20)
    check(s, [A, B, C], [a, b], [(a @ b).astype("int32")], rtol=0, atol=0)


# ----------------------------------------------------------------------------- conv2d


def conv2d_reference(x, w, stride, pad):
    x = np.pad(x.astype("float64"), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for dy in range(kh):
        for dx in range(kw):
            window = x[:, :, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride]
            out += np.einsum("nchw,fc->nfhw", window, w[:, :, dy, dx])
    return out


def conv2d(shape_x, shape_w, stride, pad, padding):
    """NCHW conv2d; `padding` is "select" (if_then_else inside the reduction) or "stage" (a padded compute)."""
    n, c, h, w = shape_x
    f, _, kh, kw = shape_w
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    X = te.placeholder(shape_x, name="X")
    W = te.placeholder(shape_w, name="W")
    rc, ry, rx = te.reduce_axis(c, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")

    def inside(y, x):
        return te.all(y >= pad, y < h + pad, x >= pad, x < w + pad)

    if padding == "stage":
        P = te.compute((n, c, h + 2 * pad, w + 2 * pad),
                       lambda b, ch, y, x: te.if_then_else(inside(y, x), X[b, ch, y - pad, x - pad], 0.0), name="Xpad")
        read = lambda b, y, x: P[b, rc, y, x]
    else:
        P = None
        read = lambda b, y, x: te.if_then_else(inside(y, x), X[b, rc, y - pad, x - pad], 0.0)
    Y = te.compute((n, f, oh, ow),
                   lambda b, k, y, x: te.sum(read(b, y * stride + ry, x * stride + rx) * W[k, rc, ry, rx],
                                             axis=[rc, ry, rx]), name="Y")
    return X, W, P, Y


CONV_CASES = [  # (input NCHW, weight FCKK, stride, pad)
    ((1, 3, 9, 9), (4, 3, 3, 3), 1, 1),
    ((2, 3, 9, 8), (5, 3, 3, 3), 2, 1),
    ((1, 2, 7, 7), (3, 2, 1, 1), 2, 0),
    ((1, 4, 6, 6), (4, 4, 5, 5), 1, 2),
]


@pytest.mark.parametrize("padding", ["select", "stage"])
@pytest.mark.parametrize("shape_x,shape_w,stride,pad", CONV_CASES)
def test_conv2d_direct(shape_x, shape_w, stride, pad, padding, check, rng):
    X, W, _, Y = conv2d(shape_x, shape_w, stride, pad, padding)
    x, w = random_array(rng, shape_x), random_array(rng, shape_w)
    check(te.create_schedule(Y), [X, W, Y], [x, w], [conv2d_reference(x, w, stride, pad)])


@pytest.mark.parametrize("attach", ["inline", "root", "fo", "y", "xo"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_tiled(stride, attach, check, rng):
    """Split output channels and width (neither divides), reduce outside the vectorized width tile,
    and place the padding stage inline, at root, or inside one of the output loops."""
    shape_x, shape_w = (1, 3, 11, 13), (6, 3, 3, 3)
    X, W, P, Y = conv2d(shape_x, shape_w, stride, 1, "stage")
    s = te.create_schedule(Y)
    b, k, y, x = Y.op.axis
    rc, ry, rx = Y.op.reduce_axis
    fo, fi = s[Y].split(k, factor=4)
    xo, xi = s[Y].split(x, factor=4)
    s[Y].reorder(b, fo, y, xo, rc, ry, fi, rx, xi)
    s[Y].vectorize(xi)
    s[Y].unroll(rx)
    if attach == "inline":
        s[P].compute_inline()
    elif attach != "root":
        s[P].compute_at(s[Y], {"fo": fo, "y": y, "xo": xo}[attach])
    x_np, w_np = random_array(rng, shape_x), random_array(rng, shape_w)
    check(s, [X, W, Y], [x_np, w_np], [conv2d_reference(x_np, w_np, stride, 1)])


# ----------------------------------------------------------------------------- softmax and pooling


def softmax(n, m):
    A = te.placeholder((n, m), name="A")
    k1, k2 = te.reduce_axis(m, "k1"), te.reduce_axis(m, "k2")
    mx = te.compute((n,), lambda i: te.max(A[i, k1], axis=k1), name="rowmax")
    e = te.compute((n, m), lambda i, j: te.exp(A[i, j] - mx[i]), name="expo")
    sm = te.compute((n,), lambda i: te.sum(e[i, k2], axis=k2), name="expsum")
    out = te.compute((n, m), lambda i, j: e[i, j] / sm[i], name="softmax")
    return A, (mx, e, sm), out


@pytest.mark.parametrize("schedule", ["root", "rows_at_output", "rows_at_parallel_output", "vectorized"])
def test_softmax(schedule, target, check, rng):
    A, (mx, e, sm), out = softmax(6, 19)
    s = te.create_schedule(out)
    i, j = out.op.axis
    if schedule.startswith("rows_at"):
        for stage in (mx, e, sm):
            s[stage].compute_at(s[out], i)
        if "parallel" in schedule:  # each thread needs its own row buffers
            s[out].parallel(i)
    elif schedule == "vectorized":
        jo, ji = s[out].split(j, factor=8)
        s[out].vectorize(ji)
        s[out].parallel(i)
        eo, ei = s[e].split(e.op.axis[1], factor=8)
        s[e].vectorize(ei)
    a = random_array(rng, (6, 19), low=-5, high=5).astype("float32")
    z = np.exp(a - a.max(axis=1, keepdims=True))
    check(s, [A, out], [a], [z / z.sum(axis=1, keepdims=True)], atol=1e-6, target_string=f"{target} -threads=4")


def pool(kind, shape, size, stride):
    n, c, h, w = shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    X = te.placeholder(shape, name="X")
    ry, rx = te.reduce_axis(size, "ry"), te.reduce_axis(size, "rx")
    if kind == "max":
        body = lambda b, ch, y, x: te.max(X[b, ch, y * stride + ry, x * stride + rx], axis=[ry, rx])
    else:
        body = lambda b, ch, y, x: te.sum(X[b, ch, y * stride + ry, x * stride + rx] / float(size * size),
                                          axis=[ry, rx])
    return X, te.compute((n, c, oh, ow), body, name=f"{kind}pool")


def pool_reference(kind, x, size, stride):
    _, _, h, w = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    windows = [x[:, :, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride].astype("float64")
               for dy in range(size) for dx in range(size)]
    return np.max(windows, axis=0) if kind == "max" else np.mean(windows, axis=0)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("vectorized", [False, True])
def test_pool_stride_2(kind, size, vectorized, check, rng):
    X, Y = pool(kind, (2, 3, 9, 10), size, 2)
    s = te.create_schedule(Y)
    if vectorized:
        b, c, y, x = Y.op.axis
        xo, xi = s[Y].split(x, factor=4)
        s[Y].reorder(b, c, y, xo, *Y.op.reduce_axis, xi)
        s[Y].vectorize(xi)
    x_np = random_array(rng, (2, 3, 9, 10))
    check(s, [X, Y], [x_np], [pool_reference(kind, x_np, size, 2)])


# ----------------------------------------------------------------------------- placement: inline, compute_at


def test_compute_inline_chain(check, rng):
    A = te.placeholder((N, M), name="A")
    B = te.compute((N, M), lambda i, j: A[i, j] * 2.0, name="B")
    C = te.compute((N, M), lambda i, j: B[i, j] + B[N - 1 - i, j], name="C")
    s = te.create_schedule(C)
    s[B].compute_inline()
    a = random_array(rng, (N, M))
    check(s, [A, C], [a], [2 * a + 2 * a[::-1]])
    assert "B[" not in str(lathe.lower(s, [A, C]))  # no buffer is left for the inlined stage


def test_compute_inline_into_reduction(check, rng):
    """Two inlined elementwise stages feeding a matmul: C = relu(A + 1) @ B."""
    A, B, _ = matmul(6, 5, 4)
    A1 = te.compute(A.shape, lambda i, k: A[i, k] + 1.0, name="A1")
    A2 = te.compute(A.shape, lambda i, k: te.max(A1[i, k], 0.0), name="A2")
    k = te.reduce_axis(4, "k")
    C = te.compute((6, 5), lambda i, j: te.sum(A2[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C)
    s[A1].compute_inline()
    s[A2].compute_inline()
    a, b = random_array(rng, (6, 4)), random_array(rng, (4, 5))
    check(s, [A, B, C], [a, b], [np.maximum(a.astype("float64") + 1, 0) @ b])


def stencil_chain():
    """A -> B (one row taller) -> C[i, j] = B[i, j] + B[i + 1, j]: C needs two rows of B per row."""
    A = te.placeholder((10, 9), name="A")
    B = te.compute((10, 9), lambda i, j: A[i, j] * 3.0 + 1.0, name="B")
    C = te.compute((9, 9), lambda i, j: B[i, j] + B[i + 1, j], name="C")
    return A, B, C


@pytest.mark.parametrize("annotate", ["none", "parallel", "unroll"])
@pytest.mark.parametrize("where", ["i.outer", "i.inner", "j.outer", "j.inner"])
def test_compute_at_chain(where, annotate, target, check, rng):
    A, B, C = stencil_chain()
    s = te.create_schedule(C)
    io, ii = s[C].split(C.op.axis[0], factor=4)
    jo, ji = s[C].split(C.op.axis[1], factor=2)
    s[C].reorder(io, jo, ii, ji)
    axes = {"i.outer": io, "i.inner": ii, "j.outer": jo, "j.inner": ji}
    s[B].compute_at(s[C], axes[where])
    if annotate == "parallel":  # B's region buffer must be private to each thread
        s[C].parallel(io)
    elif annotate == "unroll":  # each unrolled copy of the body holds its own B region
        s[C].unroll(ii)
        s[C].unroll(ji)
    a = random_array(rng, (10, 9))
    b = a.astype("float64") * 3 + 1
    check(s, [A, C], [a], [b[:-1] + b[1:]], target_string=f"{target} -threads=3")


@pytest.mark.parametrize("factor", [1, 4, 9, 10, 70])
@pytest.mark.parametrize("where", ["outer", "inner"])
def test_compute_at_fused_axis(factor, where, check, rng):
    """The region of B one fused-and-split iteration of C needs crosses row boundaries."""
    A, B, C = stencil_chain()
    s = te.create_schedule(C)
    fo, fi = s[C].split(s[C].fuse(*C.op.axis), factor=factor)
    s[B].compute_at(s[C], fo if where == "outer" else fi)
    a = random_array(rng, (10, 9))
    b = a.astype("float64") * 3 + 1
    check(s, [A, C], [a], [b[:-1] + b[1:]])


@pytest.mark.parametrize("b_at", [0, 1])
@pytest.mark.parametrize("c_at", [0, 1])
def test_compute_at_three_stage_chain(b_at, c_at, check, rng):
    """A -> B -> C -> D with B computed inside C's loops and C inside D's loops."""
    A = te.placeholder((12, 8), name="A")
    B = te.compute((12, 8), lambda i, j: te.exp(A[i, j]), name="B")
    C = te.compute((11, 8), lambda i, j: B[i, j] - B[i + 1, j], name="C")
    D = te.compute((11, 4), lambda i, j: C[i, 2 * j] + C[i, 2 * j + 1], name="D")
    s = te.create_schedule(D)
    do, di = s[D].split(D.op.axis[0], factor=3)
    s[C].compute_at(s[D], [do, di][c_at])
    co, ci = s[C].split(C.op.axis[1], factor=4)
    s[B].compute_at(s[C], [C.op.axis[0], co][b_at])
    a = random_array(rng, (12, 8))
    b = np.exp(a.astype("float64"))
    c = b[:-1] - b[1:]
    check(s, [A, D], [a], [c[:, 0::2] + c[:, 1::2]])


def test_two_outputs_sharing_an_inlined_stage(check, rng):
    A = te.placeholder((N, M), name="A")
    B = te.compute((N, M), lambda i, j: A[i, j] + 1.0, name="B")
    C = te.compute((N, M), lambda i, j: B[i, j] * 2.0, name="C")
    D = te.compute((N, M), lambda i, j: B[i, j] - 3.0, name="D")
    s = te.create_schedule([C, D])
    s[B].compute_inline()
    a = random_array(rng, (N, M))
    check(s, [A, C, D], [a], [(a + 1.0) * 2, a + 1.0 - 3])


# ----------------------------------------------------------------------------- caches


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("tile", [(8, 8), (7, 5)])
def test_matmul_cache_write_accumulates_in_registers(tile, parallel, target, check, rng):
    A, B, C = matmul(64, 48, 40)
    s = te.create_schedule(C)
    CL = s.cache_write(C, "local")
    io, jo, ii, ji = s[C].tile(*s[C].op.axis, *tile)  # s[C].op is now the copy out of CL
    s[C].vectorize(ji)
    s[CL].compute_at(s[C], jo)
    ci, cj = s[CL].op.axis
    (k,) = s[CL].op.reduce_axis
    ko, ki = s[CL].split(k, factor=4)
    s[CL].reorder(ko, ki, ci, cj)
    s[CL].vectorize(cj)
    s[CL].unroll(ki)
    if parallel:  # the accumulator tile must be private to each thread
        s[C].parallel(io)
    a, b = random_array(rng, (64, 40)), random_array(rng, (40, 48))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b], target_string=f"{target} -threads=4")


@pytest.mark.parametrize("cached", ["A", "B", "AB"])
@pytest.mark.parametrize("at", ["k.outer", "j.outer"])
def test_matmul_cache_read_local(cached, at, check, rng):
    A, B, C = matmul(20, 18, 12)
    s = te.create_schedule(C)
    io, jo, ii, ji = s[C].tile(C.op.axis[0], C.op.axis[1], 8, 6)
    ko, ki = s[C].split(C.op.reduce_axis[0], factor=5)
    s[C].reorder(io, jo, ko, ii, ki, ji)
    for name, tensor in (("A", A), ("B", B)):
        if name in cached:
            cache = s.cache_read(tensor, "local", [C])
            s[cache].compute_at(s[C], {"k.outer": ko, "j.outer": jo}[at])
    a, b = random_array(rng, (20, 12)), random_array(rng, (12, 18))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b])


def test_cache_read_and_cache_write_together(check, rng):
    A, B, C = matmul(16, 16, 16)
    s = te.create_schedule(C)
    AA = s.cache_read(A, "local", [C])
    CL = s.cache_write(C, "local")
    io, jo, ii, ji = s[C].tile(*s[C].op.axis, 4, 8)
    s[CL].compute_at(s[C], jo)
    s[AA].compute_at(s[CL], s[CL].op.reduce_axis[0])
    a, b = random_array(rng, (16, 16)), random_array(rng, (16, 16))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b])
