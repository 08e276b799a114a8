"""`lathe export-web MODEL -o DIR`: a self-contained static page that classifies images with WebGPU, or
WebGL2 where the browser has no WebGPU, or WebAssembly on the CPU where it has neither (or WebGL2 lacks
EXT_color_buffer_float); `?backend=webgpu|webgl|wasm` in the page's URL forces one.

DIR holds index.html, app.js, lathe.js, webgpu.js and wasm.js (the runtimes), model/webgpu, model/webgl and
model/wasm (the artifacts; wasm only where clang and lld can build it), labels.json and the sample cat; any
static file server can host it (WebGPU needs https or localhost). The page preprocesses like
lathe.zoo.preprocess (shorter side to 256, centre crop 224, (x - 127) / 128) with a canvas, runs the model,
and shows top-5, the time and which backend ran.
"""

from __future__ import annotations

import json
import os
import shutil

from lathe.rpc.server import WEB_DIR

STATIC = ("index.html", "app.js", "lathe.js", "webgpu.js", "wasm.js")


def export_web(model, out_dir: str) -> str:
    """Compile `model` (ONNX path/bytes/ModelProto or zoo name) for webgpu, webgl and wasm; write the page to
    out_dir."""
    import lathe
    from lathe.cli import resolve_model
    from lathe.codegen.wasm import clang_path
    from lathe.zoo import cat_image, imagenet_labels

    proto = resolve_model(model) if isinstance(model, str) else model
    os.makedirs(out_dir, exist_ok=True)
    for target in ("webgpu", "webgl", "wasm") if clang_path() else ("webgpu", "webgl"):
        lathe.compile(proto, target=target).save(os.path.join(out_dir, "model", target))
    for f in STATIC:
        shutil.copyfile(os.path.join(WEB_DIR, "static" if f in ("index.html", "app.js") else "", f),
                        os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "labels.json"), "w") as fh:
        json.dump(imagenet_labels(), fh)
    from PIL import Image

    Image.fromarray(cat_image()).save(os.path.join(out_dir, "cat.png"))
    return out_dir
