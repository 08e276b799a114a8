"""Loop primitives one at a time: each schedule is checked against NumPy (rtol=1e-5, atol=1e-5), and
`lathe.lower` shows the loops the primitives made."""

import numpy as np
import pytest

import lathe
from conftest import random_array
from lathe import te


def elementwise(*shape):
    """B = A * 2 + 1 over `shape`, reading A at a transposed position too so index mix-ups show."""
    A = te.placeholder(shape, name="A")
    B = te.compute(shape, lambda *i: A[i] * 2.0 + A[tuple(n - 1 - x for n, x in zip(shape, i))], name="B")
    return A, B


def expected_elementwise(a):
    return a.astype("float64") * 2 + a[tuple(slice(None, None, -1) for _ in a.shape)]


def same_axes(xs, ys):
    """Identity, not `==`: `==` on axes builds a symbolic comparison."""
    return len(xs) == len(ys) and all(x is y for x, y in zip(xs, ys))


def check_elementwise(check, rng, s, A, B):
    a = random_array(rng, A.shape)
    check(s, [A, B], [a], [expected_elementwise(a)])


SPLITS = [  # (extent, keyword, value)
    (17, "factor", 4),
    (17, "factor", 1),
    (17, "factor", 17),
    (17, "factor", 20),  # larger than the extent
    (17, "nparts", 4),
    (17, "nparts", 1),
    (17, "nparts", 17),
    (17, "nparts", 5),
    (16, "factor", 4),
    (1, "factor", 3),
]


@pytest.mark.parametrize("extent,keyword,value", SPLITS)
def test_split(extent, keyword, value, check, rng):
    A, B = elementwise(extent)
    s = te.create_schedule(B)
    outer, inner = s[B].split(B.op.axis[0], **{keyword: value})
    if keyword == "factor":
        assert inner.extent.value == value and outer.extent.value == -(-extent // value)
    else:
        assert outer.extent.value * inner.extent.value >= extent
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("factors", [(4, 3), (5, 2), (3, 7), (8, 8)])
def test_split_the_inner_of_a_split(factors, check, rng):
    A, B = elementwise(19, 3)
    s = te.create_schedule(B)
    o, i = s[B].split(B.op.axis[0], factor=factors[0])
    io, ii = s[B].split(i, factor=factors[1])
    oo, oi = s[B].split(o, nparts=2)
    assert same_axes(s[B].leaf_iter_vars[:4], [oo, oi, io, ii])
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("shape,factors", [((13, 10), (4, 3)), ((16, 8), (4, 4)), ((5, 9), (8, 2)), ((7, 7), (1, 7))])
def test_tile(shape, factors, check, rng):
    A, B = elementwise(*shape)
    s = te.create_schedule(B)
    xo, yo, xi, yi = s[B].tile(*B.op.axis, *factors)
    assert same_axes(s[B].leaf_iter_vars, [xo, yo, xi, yi])
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("factor", [1, 4, 7, 30, 100])
def test_fuse_then_split(factor, check, rng):
    A, B = elementwise(6, 5, 3)
    s = te.create_schedule(B)
    i, j, k = B.op.axis
    f = s[B].fuse(i, j, k)
    assert f.extent.value == 90
    s[B].split(f, factor=factor)
    check_elementwise(check, rng, s, A, B)


def test_split_then_fuse_outer_axes(check, rng):
    A, B = elementwise(10, 7)
    s = te.create_schedule(B)
    io, ii = s[B].split(B.op.axis[0], factor=3)
    jo, ji = s[B].split(B.op.axis[1], factor=4)
    s[B].reorder(io, jo, ii, ji)
    s[B].fuse(io, jo)
    s[B].fuse(ii, ji)
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1), (2, 0, 1), (1, 2, 0)])
def test_reorder(order, check, rng):
    A, B = elementwise(3, 4, 5)
    s = te.create_schedule(B)
    axes = [B.op.axis[n] for n in order]
    s[B].reorder(*axes)
    assert same_axes(s[B].leaf_iter_vars, axes)
    check_elementwise(check, rng, s, A, B)


def test_reorder_a_subset_keeps_other_axes_in_place(check, rng):
    A, B = elementwise(3, 4, 5)
    s = te.create_schedule(B)
    i, j, k = B.op.axis
    s[B].reorder(k, i)
    assert same_axes(s[B].leaf_iter_vars, [k, j, i])
    check_elementwise(check, rng, s, A, B)


def test_reorder_reduction_outermost(check, rng):
    A = te.placeholder((6, 5), name="A")
    k = te.reduce_axis(5, "k")
    R = te.compute((6,), lambda i: te.sum(A[i, k] * A[5 - i, k], axis=k), name="R")
    s = te.create_schedule(R)
    io, ii = s[R].split(R.op.axis[0], factor=4)
    s[R].reorder(k, ii, io)
    a = random_array(rng, (6, 5))
    check(s, [A, R], [a], [(a.astype("float64") * a[::-1]).sum(axis=1)])


@pytest.mark.parametrize("extent,factor", [(12, 4), (13, 4), (5, 5), (7, 8), (3, 1)])
def test_unroll(extent, factor, check, rng):
    A, B = elementwise(extent, 3)
    s = te.create_schedule(B)
    o, i = s[B].split(B.op.axis[0], factor=factor)
    s[B].unroll(i)
    s[B].unroll(B.op.axis[1])
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("extent", [1, 2, 3, 5])
def test_unroll_copies_that_fall_entirely_in_the_tail(extent, check, rng):
    """Split by 4 then by 2 and unroll the middle axis: for small extents a whole unrolled copy
    of the inner loop is out of bounds, so its body simplifies away."""
    A, B = elementwise(extent)
    s = te.create_schedule(B)
    o, i = s[B].split(B.op.axis[0], factor=4)
    io, ii = s[B].split(i, factor=2)
    s[B].unroll(io)
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("extent", [1, 3, 7, 8, 16, 17, 33])
def test_vectorize_whole_axis(extent, check, rng):
    A, B = elementwise(4, extent)
    s = te.create_schedule(B)
    s[B].vectorize(B.op.axis[1])
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("extent,factor", [(17, 8), (17, 4), (30, 16), (5, 3), (9, 9)])
def test_vectorize_inner_of_uneven_split(extent, factor, check, rng):
    A, B = elementwise(3, extent)
    s = te.create_schedule(B)
    o, i = s[B].split(B.op.axis[1], factor=factor)
    s[B].vectorize(i)
    check_elementwise(check, rng, s, A, B)


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_vectorize_with_broadcast_and_select(dtype, check, rng):
    """A vector loop whose body mixes a loop-invariant read, an index test and a cast."""
    A = te.placeholder((4, 11), dtype=dtype, name="A")
    v = te.placeholder((4,), dtype=dtype, name="v")
    B = te.compute((4, 11), lambda i, j: te.if_then_else(j % 3 == 0, A[i, j] * v[i], A[i, j] + te.cast(j, dtype)),
                   name="B")
    s = te.create_schedule(B)
    s[B].vectorize(B.op.axis[1])
    a, b = random_array(rng, (4, 11), dtype, -9, 9), random_array(rng, (4,), dtype, -9, 9)
    j = np.arange(11)
    check(s, [A, v, B], [a, b], [np.where(j % 3 == 0, a * b[:, None], a + j).astype(dtype)])


@pytest.mark.parametrize("threads", [None, 1, 2, 3])
@pytest.mark.parametrize("which", ["outer", "fused", "split_outer"])
def test_parallel(which, threads, target, check, rng):
    A, B = elementwise(11, 6)
    s = te.create_schedule(B)
    i, j = B.op.axis
    if which == "outer":
        s[B].parallel(i)
    elif which == "fused":
        s[B].parallel(s[B].fuse(i, j))
    else:
        io, ii = s[B].split(i, nparts=4)
        s[B].parallel(io)
        s[B].vectorize(j)
    a = random_array(rng, (11, 6))
    check(s, [A, B], [a], [expected_elementwise(a)], target_string=target + (f" -threads={threads}" if threads else ""))


def test_parallel_reduction_rows(target, check, rng):
    A = te.placeholder((37, 20), name="A")
    k = te.reduce_axis(20, "k")
    R = te.compute((37,), lambda i: te.sum(A[i, k], axis=k), name="R")
    s = te.create_schedule(R)
    io, ii = s[R].split(R.op.axis[0], factor=5)
    s[R].parallel(io)
    a = random_array(rng, (37, 20))
    check(s, [A, R], [a], [a.astype("float64").sum(axis=1)], target_string=f"{target} -threads=4")


def test_compute_root_undoes_compute_inline(check, rng):
    A, B = elementwise(4, 5)
    C = te.compute((4, 5), lambda i, j: B[i, j] - 1.0, name="C")
    s = te.create_schedule(C)
    s[B].compute_inline()
    s[B].compute_root()
    assert "B[" in str(lathe.lower(s, [A, C]))
    a = random_array(rng, (4, 5))
    check(s, [A, C], [a], [expected_elementwise(a) - 1])


# ----------------------------------------------------------------------------- what lathe.lower shows


def test_lower_returns_a_printable_function():
    """lathe.lower gives the loop IR as a PrimFunc (what lathe.build also takes); str() is the readable text."""
    A, B = elementwise(17)
    s = te.create_schedule(B)
    s[B].split(B.op.axis[0], factor=4)
    func = lathe.lower(s, [A, B])
    assert isinstance(func, lathe.tir.PrimFunc)
    text = str(func)
    assert text.startswith("func main(A: float32[17], B: float32[17]):") and "for i0.outer in 0..5:" in text


def tiled_fused():
    A, B = elementwise(17, 9)
    s = te.create_schedule(B)
    io, ii = s[B].split(B.op.axis[0], factor=4)
    jo, ji = s[B].split(B.op.axis[1], factor=3)
    s[B].reorder(io, jo, ii, ji)
    s[B].fuse(io, jo)
    return s, [A, B]


def test_lower_shows_the_loop_names():
    text = str(lathe.lower(*tiled_fused()))
    for name in ("i0.outer", "i1.outer", "i0.inner", "i1.inner", "fused"):
        assert name in text, f"{name} missing from:\n{text}"
    for name in ("A", "B"):
        assert name in text


def test_lower_shows_named_axes_of_a_matmul():
    A = te.placeholder((8, 6), name="A")
    W = te.placeholder((6, 10), name="W")
    k = te.reduce_axis(6, "k")
    C = te.compute((8, 10), lambda i, j: te.sum(A[i, k] * W[k, j], axis=k), name="C")
    s = te.create_schedule(C)
    io, ii = s[C].split(C.op.axis[0], factor=4)
    ko, ki = s[C].split(k, factor=2)
    s[C].reorder(io, ko, ii, ki, C.op.axis[1])
    text = str(lathe.lower(s, [A, W, C]))
    for name in ("i.outer", "i.inner", "k.outer", "k.inner", "j"):
        assert name in text, f"{name} missing from:\n{text}"


def test_kernel_exposes_source_and_ir(target):
    s, args = tiled_fused()
    kernel = lathe.build(s, args, target=target)
    assert isinstance(kernel.source, str) and kernel.source.strip()
    assert isinstance(kernel.ir, str) and "i0.inner" in kernel.ir


def _matmul_with_prefetch(offset: int):
    """C = A @ B with k split; each inner-k iteration hints B's rows one outer-k step ahead."""
    A, B = te.placeholder((8, 32), name="A"), te.placeholder((32, 16), name="B")
    k = te.reduce_axis(32, "k")
    C = te.compute((8, 16), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C)
    i, j = C.op.axis
    ko, ki = s[C].split(k, factor=4)
    s[C].reorder(i, ko, ki, j)
    s[C].vectorize(j)
    s[C].prefetch(B, ki, ko, offset)
    return s, A, B, C


@pytest.mark.parametrize("offset", [1, 3, -1])
def test_prefetch_is_a_hint_that_changes_no_result(offset, check, rng):
    s, A, B, C = _matmul_with_prefetch(offset)
    a, b = random_array(rng, (8, 32)), random_array(rng, (32, 16))
    check(s, [A, B, C], [a, b], [a.astype("float64") @ b])


def test_prefetch_in_the_ir_and_the_code(target):
    s, A, B, C = _matmul_with_prefetch(1)
    ir = str(lathe.lower(s, [A, B, C]))
    assert "prefetch(B[" in ir and "min(" in ir, ir  # one step ahead, clamped to the last step
    kernel = lathe.build(s, [A, B, C], target=target)
    assert ("__builtin_prefetch" if target == "c" else "llvm.prefetch") in kernel.source


def test_prefetch_names_a_foreign_axis():
    s, A, B, C = _matmul_with_prefetch(1)
    k2 = te.reduce_axis(4, "k2")
    with pytest.raises(lathe.ScheduleError, match="prefetch"):
        s[C].prefetch(B, k2, C.op.axis[0])
