"""The index simplifier: linear forms, floor division/modulo with known ranges, proofs of guards."""

import pytest

from lathe.expr import Const, Var, binary
from lathe.tir.arith import Analyzer, simplify


def v(name):
    return Var(name)


def test_linear_terms_cancel_and_fold():
    i, j = v("i"), v("j")
    assert str(simplify(i * 4 + j - i * 4 + 3 - 3)) == "j"
    assert str(simplify((i + 1) * 8 - 8)) == "i * 8"
    assert simplify(i - i).value == 0


def test_floordiv_and_mod_of_split_index_recover_the_parts():
    o, n = v("o"), v("n")
    an = Analyzer({n: (0, 15)})
    assert str(an.simplify((o * 16 + n) // 16)) == "o"
    assert str(an.simplify((o * 16 + n) % 16)) == "n"


def test_floordiv_keeps_unknown_remainder():
    o, n = v("o"), v("n")
    e = simplify((o * 16 + n) // 16)  # n's range unknown: cannot drop n // 16
    assert "n // 16" in str(e) and "o" in str(e)


@pytest.mark.parametrize("cond, truth", [
    (lambda i: i < 16, True), (lambda i: i >= 0, True), (lambda i: i < 15, None), (lambda i: i * 2 + 1 != 0, True),
])
def test_guards_proved_from_loop_ranges(cond, truth):
    i = v("i")
    an = Analyzer({i: (0, 15)})
    out = an.simplify(cond(i))
    if truth is None:
        assert not isinstance(out, Const)
    else:
        assert isinstance(out, Const) and out.value is truth


def test_min_max_resolved_by_ranges():
    i = v("i")
    an = Analyzer({i: (0, 7)})
    assert str(an.simplify(binary("min", i, 8))) == "i"
    assert str(an.simplify(binary("max", i, -1))) == "i"


def test_float32_constants_fold_like_float32_arithmetic():
    """Folding a float32 chain in float64 gave 4.9999998 where the kernel computes 5.0 (a linear Resize
    then truncated it to the wrong pixel once its lanes were unrolled): every float32 Const holds a float32."""
    import numpy as np

    assert Const(0.1, "float32").value == float(np.float32(0.1))
    x = binary("*", binary("/", Const(3.0, "float32"), Const(0.6, "float32")), Const(1.0, "float32"))
    want = np.float32(3.0) / np.float32(0.6)
    assert simplify(x).value == float(want) and float(want) == 5.0
