"""`lathe export-web MODEL -o DIR`: a self-contained static page that classifies images with WebGPU, or
WebGL2 where the browser has no WebGPU.

DIR holds index.html, app.js, lathe.js and webgpu.js (the runtimes), model/webgpu and model/webgl (the two
artifacts), labels.json and the sample cat; any static file server can host it (WebGPU needs https or
localhost). The page preprocesses like lathe.zoo.preprocess (shorter side to 256, centre crop 224,
(x - 127) / 128) with a canvas, runs the model, and shows top-5 and the time.
"""

from __future__ import annotations

import json
import os
import shutil

from lathe.rpc.server import WEB_DIR

STATIC = ("index.html", "app.js", "lathe.js", "webgpu.js")


def export_web(model, out_dir: str) -> str:
    """Compile `model` (ONNX path/bytes/ModelProto or zoo name) for webgpu and webgl; write the page to out_dir."""
    import lathe
    from lathe.cli import resolve_model
    from lathe.zoo import cat_image, imagenet_labels

    proto = resolve_model(model) if isinstance(model, str) else model
    os.makedirs(out_dir, exist_ok=True)
    for target in ("webgpu", "webgl"):
        lathe.compile(proto, target=target).save(os.path.join(out_dir, "model", target))
    for f in STATIC:
        shutil.copyfile(os.path.join(WEB_DIR, "static" if f in ("index.html", "app.js") else "", f),
                        os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "labels.json"), "w") as fh:
        json.dump(imagenet_labels(), fh)
    from PIL import Image

    Image.fromarray(cat_image()).save(os.path.join(out_dir, "cat.png"))
    return out_dir
