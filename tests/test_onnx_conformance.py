"""The ONNX backend node tests in lathe's operator set, on `llvm` (see tests/conformance.py).

Tests that docs/conformance.md lists as failing are expected failures; all others must pass,
and a listed failure that starts passing is reported (strict xfail) so the document stays true.
"""

import os
import re

import pytest

from conformance import data_root, run_lathe, select_tests

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "conformance.md")


def known_failures() -> dict:
    if not os.path.exists(DOC):
        return {}
    text = open(DOC).read().split("## Tests ONNX Runtime fails")[0]
    return dict(re.findall(r"^- `(test_\w+)`: (.*)$", text, flags=re.M))


TESTS = select_tests() if data_root() else []
KNOWN = known_failures()


def test_the_suite_is_installed():
    assert TESTS, "no ONNX node tests found: the Makefile installs onnx==1.22.0, which ships them"


@pytest.mark.parametrize("case", TESTS, ids=[os.path.basename(d) for d in TESTS])
def test_node(case):
    name = os.path.basename(case)
    why = run_lathe(case, "llvm")
    if name in KNOWN:  # documented in docs/conformance.md
        if why is None:
            pytest.fail(f"{name} now passes: regenerate docs/conformance.md (python tests/conformance.py --write ...)")
        pytest.xfail(why)
    assert why is None, why
