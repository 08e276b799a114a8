"""Property: a schedule never changes what a kernel computes.

Hypothesis draws a small compute (2-D or 3-D elementwise, or a matmul with a reduction axis) and a
random sequence of split / reorder / fuse / unroll / vectorize on it; the built kernel must match
NumPy (rtol=1e-5, atol=1e-5) on every target.
"""

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from conftest import ATOL, RTOL, random_array, run_kernel
from lathe import te

MAX_UNROLL = 16  # keep unrolled bodies (and C compile times) small


def elementwise_2d(draw):
    n, m = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    A = te.placeholder((n, m), name="A")
    B = te.placeholder((m, n), name="B")
    C = te.compute((n, m), lambda i, j: A[i, j] * 2.0 - B[j, i], name="C")
    return [A, B], C, lambda a, b: a * 2 - b.T


def elementwise_3d(draw):
    d = tuple(draw(st.integers(1, 6)) for _ in range(3))
    A = te.placeholder(d, name="A")
    B = te.placeholder(d[::-1], name="B")
    C = te.compute(d, lambda i, j, k: A[i, j, k] + B[k, j, i] * A[d[0] - 1 - i, j, k], name="C")
    return [A, B], C, lambda a, b: a + b.transpose(2, 1, 0) * a[::-1]


def matmul(draw):
    n, m, k_len = (draw(st.integers(1, 9)) for _ in range(3))
    A = te.placeholder((n, k_len), name="A")
    B = te.placeholder((k_len, m), name="B")
    k = te.reduce_axis(k_len, "k")
    C = te.compute((n, m), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    return [A, B], C, lambda a, b: a @ b


PROGRAMS = [elementwise_2d, elementwise_3d, matmul]
STEPS = ["split", "reorder", "fuse", "unroll", "vectorize"]


def free(stage, axis):
    """An axis no primitive has annotated yet (split and fuse refuse annotated axes)."""
    return axis not in stage.annotations


def apply_step(draw, stage, step, log):
    """Apply one primitive, drawn to be valid for the stage's current leaves; record what was done."""
    leaves = stage.leaf_iter_vars
    if step == "split":
        candidates = [a for a in leaves if free(stage, a)]
        if candidates:
            axis = draw(st.sampled_from(candidates))
            factor = draw(st.integers(1, axis.extent.value + 2))
            log.append(f"split({axis.name}, factor={factor})")
            stage.split(axis, factor=factor)
    elif step == "reorder":
        order = draw(st.permutations(leaves))
        log.append("reorder(" + ", ".join(a.name for a in order) + ")")
        stage.reorder(*order)
    elif step == "fuse":
        pairs = [(a, b) for a, b in zip(leaves, leaves[1:])
                 if a.kind == b.kind and free(stage, a) and free(stage, b)]
        if pairs:
            a, b = draw(st.sampled_from(pairs))
            log.append(f"fuse({a.name}, {b.name})")
            stage.fuse(a, b)
    elif step == "unroll":
        candidates = [a for a in leaves if free(stage, a) and a.extent.value <= MAX_UNROLL]
        if candidates:
            axis = draw(st.sampled_from(candidates))
            log.append(f"unroll({axis.name})")
            stage.unroll(axis)
    elif step == "vectorize":
        data = [a for a in leaves if a.kind == "data"]
        if data and free(stage, data[-1]) and "vectorize" not in stage.annotations.values():
            log.append(f"vectorize({data[-1].name})")
            stage.vectorize(data[-1])


def check_random_schedule(data, target):
    draw = data.draw
    program = draw(st.sampled_from(PROGRAMS))
    inputs, C, reference = program(draw)
    s = te.create_schedule(C)
    log = [f"{program.__name__} {C.shape} on {target}"]
    for step in draw(st.lists(st.sampled_from(STEPS), max_size=6)):
        apply_step(draw, s[C], step, log)
    note("\n  ".join(log))
    rng = np.random.default_rng(0)
    arrays = [random_array(rng, t.shape) for t in inputs]
    (got,) = run_kernel(s, [*inputs, C], arrays, target)
    np.testing.assert_allclose(got, reference(*(a.astype("float64") for a in arrays)), rtol=RTOL, atol=ATOL)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_schedules_keep_results_llvm(data):
    check_random_schedule(data, "llvm")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_schedules_keep_results_c(data):
    check_random_schedule(data, "c")
