"""A few hundred fuzzed models in subprocess workers (tests/fuzz_models.py; `make fuzz` runs 10,000)."""

import pytest

pytest.importorskip("onnx")

from fuzz_models import BAD, fuzz, summary  # noqa: E402

COUNT = 500


def test_fuzzed_models_fail_only_with_lathe_errors() -> None:
    """Byte and structure-aware mutations of the ONNX node tests and small CNNs: each compiles (and runs)
    or raises a lathe error; no signal, no hang over 10 s, no MemoryError, no foreign exception."""
    result = fuzz(COUNT, seed=20261125, jobs=2)
    print("\n" + summary(result))
    o = result["outcomes"]
    assert sum(o.values()) == COUNT
    assert o["ok"] > COUNT // 10, "most mutants fail to import: the mutators or seeds are broken"
    assert not result["findings"], "\n".join(f"case {i} ({name}): {kind}: {detail}"
                                             for i, name, kind, detail in result["findings"])
    assert all(o[b] == 0 for b in BAD)
