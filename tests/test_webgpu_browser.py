"""The webgpu target in real headless Chromium (--enable-unsafe-webgpu: Dawn on SwiftShader) through lathe.rpc
and web/webgpu.js: every operator case of test_ops.py, ResNet-18 and EfficientNet-Lite0 against ONNX Runtime,
and the static page classifying the cat with WebGPU.

The operator cases are lowered under their gpu schedules and loaded as one module (one browser load, one run),
each case checked with test_ops' tolerances (1e-5). Whole models: 1e-3 of max |ORT output|, the issue's bound.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading

import pytest

from lathe.rpc.server import chromium_path

pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install lathe[web])")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no /usr/bin/chromium (apt-get install chromium)")
ort = pytest.importorskip("onnxruntime")

import test_ops  # noqa: E402  (the operator cases, ONNX Runtime references and helpers)
from conftest import check_zoo_model_in_browser, op_outputs_in_browser  # noqa: E402
from test_opencl import gpu_schedule  # noqa: E402

from lathe.runtime.webgpu import kernels_module  # noqa: E402


@pytest.fixture(scope="module")
def session(browser_session):
    webgpu = browser_session.info()["webgpu"]
    if webgpu.startswith("none"):
        pytest.skip(f"this Chromium has no WebGPU: {webgpu}")
    return browser_session


@pytest.fixture(scope="module")
def op_outputs(session) -> dict:
    """Every case's kernel under its gpu schedule, in one module run once in the browser."""
    return op_outputs_in_browser(session, kernels_module, lambda case, outs: (gpu_schedule(case, outs), outs))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in test_ops.CASES])
def test_op(op_outputs, case) -> None:
    test_ops.compare(op_outputs[case.id], test_ops.expected(case), f"{case.id} on webgpu in Chromium")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_zoo_model_matches_onnxruntime(session, name: str) -> None:
    mod, feeds = check_zoo_model_in_browser(session, name, "webgpu")
    if name == "efficientnet_lite0":  # timed inside the page: each run ends with the outputs on the CPU
        times = mod.benchmark(feeds, repeat=1, warmup=0)
        assert len(times) == 1 and 0 < times[0] < 120


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the page's requests are not news
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The exported page for EfficientNet-Lite0, served on 127.0.0.1 (a secure context: WebGPU is exposed)."""
    from lathe.web_export import export_web

    out = export_web("efficientnet_lite0", str(tmp_path_factory.mktemp("site")))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=out))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def test_static_page_classifies_the_cat_with_webgpu(session, site) -> None:
    """The page picks WebGPU when the browser has it (test_web.py checks its WebGL2 fallback)."""
    out, url = site
    assert {"webgl", "webgpu"} <= set(os.listdir(os.path.join(out, "model")))  # and wasm where clang builds it
    page = session.page.context.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("body[data-done]", timeout=180_000)
        assert page.get_attribute("body", "data-done") == "1", page.inner_text("#error")
        labels = page.locator("td.label").all_inner_texts()
        assert labels[0] == "tiger cat", f"top-5 on the page: {labels}"
        assert page.get_attribute("body", "data-backend") == "webgpu"
        assert page.inner_text("#backend") == "WebGPU" and "(WebGPU;" in page.inner_text("#status")
    finally:
        page.close()
