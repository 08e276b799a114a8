"""The C renderer on hand-built flattened loop IR: render, compile, call via ctypes, compare with NumPy."""

import ctypes
import math

import numpy as np
import pytest

from lathe.codegen.c import compile_c, render_c
from lathe.errors import BuildError
from lathe.expr import Binary, Broadcast, Call, Cast, Const, Load, Not, Ramp, Select, Var, binary
from lathe.tir.stmt import Allocate, Buffer, For, IfThenElse, PrimFunc, Seq, Store

RTOL = 1e-5


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "lathe-cache"
    monkeypatch.setenv("LATHE_CACHE_DIR", str(path))
    return path


def c32(v) -> Const:
    return Const(v, "int32")


def f32(v) -> Const:
    return Const(v, "float32")


def ramp(base, lanes: int, stride: int = 1) -> Ramp:
    return Ramp(base, c32(stride), lanes)


def loop(var, extent: int, body, kind: str = "serial") -> For:
    return For(var, c32(extent), kind, body)


def run(func: PrimFunc, *arrays, threads: int = 2) -> str:
    """Render, compile, call on the arrays (written in place); returns the source."""
    source = render_c(func, threads)
    lib = ctypes.CDLL(compile_c(source))
    fn = getattr(lib, func.name)
    fn.restype = None
    fn(*[ctypes.c_void_p(a.ctypes.data) for a in arrays])
    return source


def buffers(n: int, *specs: str):
    """Buffer objects named and typed by 'name:dtype' specs, all of length n."""
    return [Buffer(s.split(":")[0], (n,), s.split(":")[1]) for s in specs]


def rand(n: int, low=-2.0, high=2.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, n).astype("float32")


# ---------------------------------------------------------------------------- loops

def test_scalar_loop_add():
    n = 37
    A, B, C = buffers(n, "A:float32", "B:float32", "C:float32")
    i = Var("i")
    f = PrimFunc("add", [A, B, C], loop(i, n, Store(C, (i,), Load(A, (i,)) + Load(B, (i,)))))
    a, b, c = rand(n), rand(n, seed=1), np.zeros(n, "float32")
    run(f, a, b, c)
    np.testing.assert_allclose(c, a + b, rtol=RTOL)


def test_parallel_loop_with_nested_parallel_runs_once():
    n, m = 64, 33
    A, C = Buffer("A", (n * m,), "float32"), Buffer("C", (n * m,), "float32")
    i, j = Var("i"), Var("j")
    idx = i * m + j
    inner = loop(j, m, Store(C, (idx,), Load(A, (idx,)) * 3.0 - 1.0), kind="parallel")
    f = PrimFunc("par", [A, C], loop(i, n, inner, kind="parallel"))
    a, c = rand(n * m), np.zeros(n * m, "float32")
    source = run(f, a, c, threads=3)
    assert source.count("#pragma omp parallel for num_threads(3) schedule(static)") == 1
    np.testing.assert_allclose(c, a.astype("float64") * 3 - 1, rtol=RTOL, atol=1e-6)  # gcc may fuse to an FMA


@pytest.mark.parametrize("kind", ["unroll", "vectorize"])
def test_unroll_and_vectorize_kinds_render_as_loops(kind):
    n = 40
    A, C = buffers(n, "A:float32", "C:float32")
    i = Var("i")
    f = PrimFunc("kinds", [A, C], loop(i, n, Store(C, (i,), Load(A, (i,)) * Load(A, (i,))), kind=kind))
    a, c = rand(n), np.zeros(n, "float32")
    source = run(f, a, c)
    assert ("#pragma GCC unroll" if kind == "unroll" else "#pragma omp simd") in source
    np.testing.assert_allclose(c, a * a, rtol=RTOL)


def test_thread_loop_is_not_c():
    A, = buffers(4, "A:float32")
    i = Var("i")
    f = PrimFunc("gpu", [A], For(i, c32(4), "thread", Store(A, (i,), f32(0.0)), thread_tag="threadIdx.x"))
    with pytest.raises(NotImplementedError, match="threadIdx.x"):
        render_c(f, 1)


# ---------------------------------------------------------------------------- vectors

@pytest.mark.parametrize("lanes", [4, 8, 16, 5])
def test_vector_body(lanes):
    """Contiguous Ramp loads/stores, Broadcast, vector arithmetic, compare and Select."""
    blocks = 6
    n = blocks * lanes
    A, B, C = buffers(n, "A:float32", "B:float32", "C:float32")
    i = Var("i")
    r = ramp(i * lanes, lanes)
    a, b = Load(A, (r,)), Load(B, (r,))
    value = Select(a > b, a * 2.0 + Broadcast(f32(1.5), lanes), b - a)
    f = PrimFunc(f"vec{lanes}", [A, B, C], loop(i, blocks, Store(C, (r,), value)))
    x, y, out = rand(n), rand(n, seed=1), np.zeros(n + 3, "float32")  # +3: lanes past the end stay untouched
    source = run(f, x, y, out)
    assert f"float32x{lanes}" in source
    x64, y64 = x.astype("float64"), y.astype("float64")
    np.testing.assert_allclose(out[:n], np.where(x > y, x64 * 2 + 1.5, y64 - x64), rtol=RTOL, atol=1e-6)
    assert not out[n:].any()


def test_gather_and_scatter():
    """A transpose: Loads with a stride-R Ramp (gather) and Stores with one (scatter)."""
    rows, cols = 8, 12
    A, C, D = (Buffer(name, (rows * cols,), "float32") for name in "ACD")
    j = Var("j")
    gathered = Load(A, (ramp(j, rows, stride=cols),))  # column j of A, rows lanes
    body = Seq([Store(C, (ramp(j * rows, rows),), gathered * 2.0),  # C = 2 A^T
                Store(D, (ramp(j, rows, stride=cols),), gathered + 1.0)])  # D = A + 1, by scatter
    f = PrimFunc("transpose", [A, C, D], loop(j, cols, body))
    a = rand(rows * cols)
    c, d = np.zeros_like(a), np.zeros_like(a)
    run(f, a, c, d)
    np.testing.assert_allclose(c, 2 * a.reshape(rows, cols).T.ravel(), rtol=RTOL)
    np.testing.assert_allclose(d, a + 1, rtol=RTOL)


def test_ramp_as_value_and_int_vectors():
    lanes, blocks = 8, 4
    n = lanes * blocks
    C, = buffers(n, "C:int32")
    i = Var("i")
    value = Ramp(i * 100, c32(3), lanes) - Broadcast(c32(7), lanes)
    f = PrimFunc("ramps", [C], loop(i, blocks, Store(C, (ramp(i * lanes, lanes),), value)))
    c = np.zeros(n, "int32")
    run(f, c)
    want = (np.arange(blocks)[:, None] * 100 + np.arange(lanes)[None] * 3 - 7).ravel()
    np.testing.assert_array_equal(c, want)


def test_bool_vectors_load_store_and_not():
    lanes, blocks = 8, 3
    n = lanes * blocks
    A, M, C, P = buffers(n, "A:float32", "M:bool", "C:float32", "P:bool")
    i = Var("i")
    r = ramp(i * lanes, lanes)
    mask = Load(M, (r,))
    body = Seq([Store(C, (r,), Select(Not(mask), Load(A, (r,)), Broadcast(f32(-1.0), lanes))),
                Store(P, (r,), Load(A, (r,)) > 0.0)])
    f = PrimFunc("masks", [A, M, C, P], loop(i, blocks, body))
    a = rand(n)
    m = np.random.default_rng(3).integers(0, 2, n).astype(bool)
    c, p = np.zeros(n, "float32"), np.zeros(n, bool)
    run(f, a, m, c, p)
    np.testing.assert_allclose(c, np.where(~m, a, -1), rtol=RTOL)
    np.testing.assert_array_equal(p, a > 0)


# ---------------------------------------------------------------------------- math and casts

REFERENCE = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "erf": np.vectorize(math.erf),
             "fabs": np.abs, "floor": np.floor, "ceil": np.ceil}


@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.parametrize("name", [*REFERENCE, "pow"])
def test_math_intrinsics(name, lanes):
    n = 32
    A, B, C = buffers(n, "A:float32", "B:float32", "C:float32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    low = 0.1 if name in ("log", "sqrt", "pow") else -3.0
    args = (Load(A, (idx,)), Load(B, (idx,))) if name == "pow" else (Load(A, (idx,)),)
    value = Call(name, args, args[0].dtype)
    f = PrimFunc(f"math_{name}", [A, B, C], loop(i, n // lanes, Store(C, (idx,), value)))
    a, b, c = rand(n, low, 3.0), rand(n, -2.0, 2.0, seed=1), np.zeros(n, "float32")
    run(f, a, b, c)
    a64, b64 = a.astype("float64"), b.astype("float64")
    want = np.power(a64, b64) if name == "pow" else REFERENCE[name](a64)
    np.testing.assert_allclose(c, want, rtol=RTOL, atol=1e-6)


def test_unknown_intrinsic_is_a_build_error():
    A, = buffers(4, "A:float32")
    i = Var("i")
    f = PrimFunc("bad_call", [A], loop(i, 4, Store(A, (i,), Call("sigmoid", (Load(A, (i,)),), "float32"))))
    with pytest.raises(BuildError, match="bad_call.*sigmoid"):
        render_c(f, 1)


@pytest.mark.parametrize("lanes", [1, 8])
def test_casts_between_int_float_bool(lanes):
    n = 32
    A, I, F, Bo = buffers(n, "A:float32", "I:int32", "F:float32", "Bo:float32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    as_int = Cast(f"int32x{lanes}" if lanes > 1 else "int32", Load(A, (idx,)))
    fdt = "float32x8" if lanes > 1 else "float32"
    as_bool = Cast("boolx8" if lanes > 1 else "bool", as_int)
    body = Seq([Store(I, (idx,), as_int),
                Store(F, (idx,), Cast(fdt, as_int * 3)),
                Store(Bo, (idx,), Cast(fdt, as_bool))])
    f = PrimFunc(f"casts{lanes}", [A, I, F, Bo], loop(i, n // lanes, body))
    a = rand(n, -5.0, 5.0)
    ints, floats, bools = np.zeros(n, "int32"), np.zeros(n, "float32"), np.zeros(n, "float32")
    run(f, a, ints, floats, bools)
    np.testing.assert_array_equal(ints, a.astype("int32"))  # C truncation, like NumPy
    np.testing.assert_array_equal(floats, (a.astype("int32") * 3).astype("float32"))
    np.testing.assert_array_equal(bools, (a.astype("int32") != 0).astype("float32"))


# ---------------------------------------------------------------------------- floor division

@pytest.mark.parametrize("lanes", [1, 8, 5])
def test_floor_div_and_mod_on_negative_ints(lanes):
    n = 40
    A, B, Q, R, T = buffers(n, "A:int32", "B:int32", "Q:int32", "R:int32", "T:int32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    a, b = Load(A, (idx,)), Load(B, (idx,))
    minus3 = Broadcast(c32(-3), lanes) if lanes > 1 else c32(-3)
    body = Seq([Store(Q, (idx,), Binary("//", a, b, a.dtype)), Store(R, (idx,), Binary("%", a, b, a.dtype)),
                Store(T, (idx,), Binary("//", a, minus3, a.dtype))])
    f = PrimFunc(f"floordiv{lanes}", [A, B, Q, R, T], loop(i, n // lanes, body))
    rng = np.random.default_rng(5)
    x = rng.integers(-50, 50, n).astype("int32")
    y = rng.choice([-7, -3, -2, -1, 1, 2, 3, 7], n).astype("int32")
    q, r, t = (np.zeros(n, "int32") for _ in range(3))
    run(f, x, y, q, r, t)
    np.testing.assert_array_equal(q, x // y)  # floor, not C's truncation
    np.testing.assert_array_equal(r, x % y)  # takes the divisor's sign
    np.testing.assert_array_equal(t, x // -3)


@pytest.mark.parametrize("lanes", [1, 8])
def test_floor_div_and_mod_on_floats(lanes):
    n = 32
    A, B, Q, R = buffers(n, "A:float32", "B:float32", "Q:float32", "R:float32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    a, b = Load(A, (idx,)), Load(B, (idx,))
    body = Seq([Store(Q, (idx,), Binary("//", a, b, a.dtype)), Store(R, (idx,), Binary("%", a, b, a.dtype))])
    f = PrimFunc(f"ffloordiv{lanes}", [A, B, Q, R], loop(i, n // lanes, body))
    x = rand(n, -10, 10)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype("float32") * rand(n, 0.5, 3.0, seed=2)
    q, r = np.zeros(n, "float32"), np.zeros(n, "float32")
    run(f, x, y, q, r)
    np.testing.assert_allclose(q, np.floor(x / y), rtol=RTOL)
    np.testing.assert_allclose(r, x - np.floor(x / y) * y, rtol=RTOL, atol=1e-5)


# ---------------------------------------------------------------------------- select, min/max, control flow

@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_select_min_max(dtype, lanes):
    n = 32
    A, B, Lo, Hi, S = buffers(n, *(f"{name}:{dtype}" for name in ("A", "B", "Lo", "Hi", "S")))
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    a, b = Load(A, (idx,)), Load(B, (idx,))
    body = Seq([Store(Lo, (idx,), binary("min", a, b)), Store(Hi, (idx,), binary("max", a, b)),
                Store(S, (idx,), Select((a < b) & (a != Const(0, dtype)), a - b, b))])
    f = PrimFunc(f"sel_{dtype}{lanes}", [A, B, Lo, Hi, S], loop(i, n // lanes, body))
    rng = np.random.default_rng(7)
    x, y = (rng.integers(-3, 3, n).astype(dtype) for _ in range(2))
    lo, hi, s = (np.zeros(n, dtype) for _ in range(3))
    run(f, x, y, lo, hi, s)
    np.testing.assert_array_equal(lo, np.minimum(x, y))
    np.testing.assert_array_equal(hi, np.maximum(x, y))
    np.testing.assert_array_equal(s, np.where((x < y) & (x != 0), x - y, y))


@pytest.mark.parametrize("lanes", [1, 8])
def test_min_max_with_nan_agree_between_scalar_and_vector(lanes):
    """fminf/fmaxf semantics in both forms: a schedule must not change results."""
    n = 8
    A, B, Lo, Hi = buffers(n, "A:float32", "B:float32", "Lo:float32", "Hi:float32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    a, b = Load(A, (idx,)), Load(B, (idx,))
    body = Seq([Store(Lo, (idx,), binary("min", a, b)), Store(Hi, (idx,), binary("max", a, b))])
    f = PrimFunc(f"nanminmax{lanes}", [A, B, Lo, Hi], loop(i, n // lanes, body))
    x = np.array([np.nan, 1, np.nan, -2, 0, 3, -1, 5], "float32")
    y = np.array([1, np.nan, np.nan, -3, 0, 4, -1, 2], "float32")
    lo, hi = np.zeros(n, "float32"), np.zeros(n, "float32")
    run(f, x, y, lo, hi)
    np.testing.assert_array_equal(lo, np.fmin(x, y))
    np.testing.assert_array_equal(hi, np.fmax(x, y))


def test_if_then_else_and_special_constants():
    n = 20
    A, C = buffers(n, "A:float32", "C:float32")
    i = Var("i")
    a = Load(A, (i,))
    even = Binary("%", i, c32(2), "int32") == 0
    body = IfThenElse(even, Store(C, (i,), Select(a > 0.0, f32(math.inf), f32(-math.inf))),
                      IfThenElse(Not(i < 15), Store(C, (i,), f32(math.nan)), Store(C, (i,), a * -0.1)))
    f = PrimFunc("branches", [A, C], loop(i, n, body))
    x, c = rand(n), np.zeros(n, "float32")
    run(f, x, c)
    idx = np.arange(n)
    odd = np.where(idx >= 15, np.nan, x * np.float32(-0.1))
    want = np.where(idx % 2 == 0, np.where(x > 0, np.inf, -np.inf), odd)
    np.testing.assert_allclose(c, want, rtol=RTOL)


# ---------------------------------------------------------------------------- allocations and names

@pytest.mark.parametrize("size", [16, 32768])  # 64 bytes on the stack; 128 KiB on the heap
def test_local_allocate(size):
    rows = 3
    A, C = Buffer("A", (rows * size,), "float32"), Buffer("C", (rows * size,), "float32")
    tmp = Buffer("tmp", (size,), "float32", scope="local")
    i, j, k = Var("i"), Var("j"), Var("j")  # two different loop variables both named "j"
    fill = loop(j, size, Store(tmp, (j,), Load(A, (i * size + j,)) * 2.0))
    reverse = loop(k, size, Store(C, (i * size + k,), Load(tmp, (c32(size - 1) - k,))))
    f = PrimFunc(f"alloc{size}", [A, C], loop(i, rows, Allocate(tmp, Seq([fill, reverse])), kind="parallel"))
    a, c = rand(rows * size), np.zeros(rows * size, "float32")
    source = run(f, a, c)
    assert ("aligned_alloc" in source and "free(tmp)" in source) == (size * 4 > 64 * 1024)
    np.testing.assert_allclose(c, (a.reshape(rows, size)[:, ::-1] * 2).ravel(), rtol=RTOL)


def test_names_are_sanitized_and_unique():
    n = 12
    first, second = Buffer("in.put", (n,), "float32"), Buffer("in.put", (n,), "float32")
    out = Buffer("float", (n,), "float32")
    i = Var("i.outer")
    f = PrimFunc("names", [first, second, out],
                 loop(i, n, Store(out, (i,), Load(first, (i,)) - Load(second, (i,)))))
    a, b, c = rand(n), rand(n, seed=1), np.zeros(n, "float32")
    source = run(f, a, b, c)
    assert "in_put" in source and "in_put_1" in source and "i_outer" in source
    np.testing.assert_allclose(c, a - b, rtol=RTOL)


def test_variable_outside_its_loop_is_a_build_error():
    A, = buffers(4, "A:float32")
    i, stray = Var("i"), Var("stray")
    f = PrimFunc("stray_var", [A], loop(i, 4, Store(A, (i,), Cast("float32", stray))))
    with pytest.raises(BuildError, match="stray_var.*stray"):
        render_c(f, 1)


# ---------------------------------------------------------------------------- compiling

def test_compile_error_names_the_kernel():
    source = '__attribute__((visibility("default"))) void broken_kernel(float* restrict A) { A[0] = nope; }\n'
    with pytest.raises(BuildError, match="broken_kernel") as err:
        compile_c(source)
    assert "nope" in str(err.value)


def test_identical_sources_share_one_library(cache_dir):
    A, = buffers(4, "A:float32")
    i = Var("i")
    source = render_c(PrimFunc("cached", [A], loop(i, 4, Store(A, (i,), f32(1.0)))), 1)
    path = compile_c(source)
    assert path.startswith(str(cache_dir)) and compile_c(source) == path
    assert compile_c(source + "\n") != path


@pytest.mark.parametrize("lanes", [1, 8, 3])
@pytest.mark.parametrize("dtype", ["float64", "float16", "int64", "int8", "uint8"])
def test_other_dtypes(dtype, lanes):
    """Lane widths other than the int32 mask's: compares, select, min, floor division, casts."""
    n = 24
    A, B, S, M, Q, F = buffers(n, *(f"{x}:{dtype}" for x in "ABSMQ"), "F:float32")
    i = Var("i")
    idx = i if lanes == 1 else ramp(i * lanes, lanes)
    a, b = Load(A, (idx,)), Load(B, (idx,))
    body = Seq([Store(S, (idx,), Select(a > b, a, b - a)), Store(M, (idx,), binary("min", a, b)),
                Store(Q, (idx,), Binary("//", a, b, a.dtype)),
                Store(F, (idx,), Cast(f"float32x{lanes}" if lanes > 1 else "float32", a))])
    f = PrimFunc(f"dt_{dtype}{lanes}", [A, B, S, M, Q, F], loop(i, n // lanes, body))
    rng = np.random.default_rng(11)
    low = 0 if dtype == "uint8" else -9
    x = rng.integers(low, 10, n).astype(dtype)
    y = rng.choice([v for v in range(low, 10) if v != 0], n).astype(dtype)
    s, m, q = (np.zeros(n, dtype) for _ in range(3))
    fl = np.zeros(n, "float32")
    run(f, x, y, s, m, q, fl)
    np.testing.assert_array_equal(s, np.where(x > y, x, y - x))
    np.testing.assert_array_equal(m, np.minimum(x, y))
    np.testing.assert_array_equal(q, np.floor_divide(x, y))
    np.testing.assert_array_equal(fl, x.astype("float32"))


def test_module_of_two_kernels_shares_one_preamble():
    from lathe.codegen.c import render_c_module

    n = 16
    A, C = buffers(n, "A:int32", "C:int32")

    def divide_by(name: str, d: int) -> PrimFunc:
        i = Var("i")
        quotient = Binary("//", Load(A, (i,)), c32(d), "int32")
        return PrimFunc(name, [A, C], loop(i, n, Store(C, (i,), quotient)))

    source = render_c_module([divide_by("first", 3), divide_by("second", 5)], 1)
    assert source.count("int32_t lathe_floordiv_int32(") == 1
    lib = ctypes.CDLL(compile_c(source))
    a, c = np.arange(-8, 8, dtype="int32"), np.zeros(n, "int32")
    for name, d in (("first", 3), ("second", 5)):
        getattr(lib, name)(ctypes.c_void_p(a.ctypes.data), ctypes.c_void_p(c.ctypes.data))
        np.testing.assert_array_equal(c, a // d)
