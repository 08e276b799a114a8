"""Shared fixtures: every kernel test runs on every CPU target and compares with NumPy."""

import numpy as np
import pytest

import lathe

TARGETS = ("llvm", "c")

# float32 kernels against float64 NumPy references
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(params=TARGETS)
def target(request):
    """The target string each kernel test is built for, once per CPU code generator."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_array(rng, shape, dtype="float32", low=-1.0, high=1.0):
    """Uniform floats in [low, high), or ints in [low, high] for integer dtypes."""
    if np.dtype(dtype).kind == "i":
        return rng.integers(int(low), int(high), size=shape, endpoint=True).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def run_kernel(s, args, inputs, target):
    """Build `s` for `target`, call it on `inputs` and fresh outputs (the remaining `args`); return the outputs."""
    kernel = lathe.build(s, args, target=target)
    outputs = [np.full(t.shape, -7, dtype=t.dtype) for t in args[len(inputs):]]  # garbage, not zeros
    kernel(*inputs, *outputs)
    return outputs


@pytest.fixture
def check(target):
    """check(s, args, inputs, expected): build for the test's target, run, compare every output with NumPy.

    `args` lists the inputs first, then the outputs; `expected` has one array per output.
    """

    def _check(s, args, inputs, expected, rtol=RTOL, atol=ATOL, target_string=None):
        outputs = run_kernel(s, args, inputs, target_string or target)
        assert len(outputs) == len(expected)
        for tensor, got, want in zip(args[len(inputs):], outputs, expected):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"output {tensor.name}")
        return outputs

    return _check


@pytest.fixture(scope="session")
def browser_session():
    """One headless Chromium (lathe.rpc) for all browser tests: Playwright's sync API runs once per process."""
    pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install lathe[web])")
    import lathe.rpc

    s = lathe.rpc.browser()
    yield s
    s.close()


def check_zoo_model_in_browser(session, name: str, target: str):
    """Compile a zoo model for a browser target, run it in `session` and compare with ONNX Runtime (1e-3 of the
    largest output); returns (module, feeds)."""
    ort = pytest.importorskip("onnxruntime")
    zoo = pytest.importorskip("lathe.zoo")
    model = zoo.get_model(name)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    feeds = {model.graph.input[0].name: x}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    mod = lathe.compile(model, target=target).attach(session)
    got = mod.run(feeds)[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= 1e-3, f"{name} on {target} in Chromium: max error {err:.3g} of max |ORT output|"
    return mod, feeds


def op_outputs_in_browser(session, kernels_module, schedule) -> dict:
    """Every test_ops case's kernel in one module, run once in the browser: case id -> its outputs.
    `schedule(case, outs)` gives (schedule, output tensors); `kernels_module` is the target runtime's."""
    import test_ops

    funcs, feed, names = [], {}, {}
    for k, case in enumerate(test_ops.CASES):
        phs, feeds, outs = test_ops.lathe_program(case)
        s, outs = schedule(case, outs)
        funcs.append(lathe.lower(s, phs + outs, name=f"op{k}"))
        args = feeds + [np.full(t.shape, 7, t.dtype) for t in outs]  # poison: the kernel must overwrite it
        feed.update({f"op{k}:{i}": a for i, a in enumerate(args)})
        names[case.id] = [f"op{k}:{len(phs) + j}" for j in range(len(outs))]
    mod = kernels_module(funcs).attach(session)
    got = dict(zip(mod.output_names, mod.run(feed)))
    # an output the kernel never stores to (an empty one) keeps what was fed
    return {cid: [got.get(n, feed[n]) for n in ns] for cid, ns in names.items()}
