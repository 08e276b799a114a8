"""Lowering passes, checked on the printed loop IR."""

import numpy as np
import pytest

import lathe
from lathe import te
from lathe.tir import lower_schedule
from lathe.tir.passes import PIPELINE, flatten_storage, remove_noop, run_pipeline, unroll, vectorize


def vector_add(n=64, lanes=16):
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B)
    _, xi = s[B].split(B.op.axis[0], lanes)
    s[B].vectorize(xi)
    return s, [A, B]


def test_vectorize_makes_vector_loads_and_stores():
    s, args = vector_add()
    text = str(lathe.lower(s, args))
    assert "ramp(" in text and "vectorized for" not in text
    assert "x16(1.0f)" in text  # the scalar constant broadcast to 16 lanes


def test_vectorize_falls_back_to_a_loop_when_a_guard_is_inside():
    s, args = vector_add(n=20)  # 20 = 16 + 4: the tail guard depends on the vector lane
    text = str(lathe.lower(s, args))
    assert "ramp(" not in text and "if " in text


def test_unroll_replaces_the_loop_by_copies():
    A = te.placeholder((4, 8), name="A")
    B = te.compute((4, 8), lambda i, j: A[i, j] * 2.0, name="B")
    s = te.create_schedule(B)
    s[B].unroll(B.op.axis[0])
    f = unroll(flatten_storage(lower_schedule(s, [A, B], "f")))
    text = str(f)
    assert text.count("for j in 0..8") == 4 and "for i " not in text


def test_flatten_storage_gives_row_major_indices():
    A = te.placeholder((3, 5), name="A")
    B = te.compute((3, 5), lambda i, j: A[i, j], name="B")
    f = flatten_storage(lower_schedule(te.create_schedule(B), [A, B], "f"))
    assert "B[i * 5 + j] = A[i * 5 + j]" in str(f)


def test_remove_noop_drops_unit_loops():
    A = te.placeholder((1, 8), name="A")
    B = te.compute((1, 8), lambda i, j: A[i, j], name="B")
    f = remove_noop(lower_schedule(te.create_schedule(B), [A, B], "f"))
    assert "for i " not in str(f)


def test_debug_env_prints_ir_after_every_pass(monkeypatch, capsys):
    monkeypatch.setenv("LATHE_DEBUG", "lower")
    s, args = vector_add()
    run_pipeline(lower_schedule(s, args, "f"))
    err = capsys.readouterr().err
    for name, _ in PIPELINE:
        assert f"after {name}" in err


def test_select_guards_loads_of_padding():
    """if_then_else(in bounds, A[i - 1], 0) must never read A[-1]: the load index is guarded."""
    A = te.placeholder((8,), name="A")
    P = te.compute((10,), lambda i: te.if_then_else(te.all(i >= 1, i < 9), A[i - 1], 0.0), name="P")
    s = te.create_schedule(P)
    text = str(lathe.lower(s, [A, P]))
    assert "A[select(" in text
    kern = lathe.build(s, [A, P])
    a = np.arange(8, dtype="float32")
    p = np.empty(10, "float32")
    kern(a, p)
    np.testing.assert_array_equal(p, np.pad(a, 1))


def test_pipeline_passes_are_named_functions():
    assert [n for n, _ in PIPELINE][:3] == ["simplify", "remove_noop", "flatten_storage"]
    assert vectorize in [p for _, p in PIPELINE]


@pytest.mark.parametrize("target", ["llvm", "c"])
def test_shared_subexpressions_stay_linear(target) -> None:
    """A DAG with 2**40 paths (each level uses the one below twice) must simplify and compile as a DAG:
    LLVM emits each node once, C-like renderers declare shared nodes as temporaries."""
    import lathe

    a = te.placeholder((16,), "float32", name="a")

    def body(i):
        e = a[i]
        for _ in range(40):
            e = e * 0.5 + e
        return e

    b = te.compute((16,), body, name="b")
    kernel = lathe.build(te.create_schedule(b), [a, b], target=target)
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    y = np.empty_like(x)
    kernel(x, y)
    np.testing.assert_allclose(y, x * np.float32(1.5) ** 40, rtol=1e-5)
