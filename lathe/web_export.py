"""`lathe export-web MODEL -o DIR`: a self-contained static page that classifies images with WebGL2.

DIR holds index.html, app.js, lathe.js (the runtime), model/ (the webgl artifact), labels.json and the
sample cat; any static file server can host it. The page preprocesses like lathe.zoo.preprocess (shorter
side to 256, centre crop 224, (x - 127) / 128) with a canvas, runs the model, and shows top-5 and the time.
"""

from __future__ import annotations

import json
import os
import shutil

from lathe.rpc.server import WEB_DIR

STATIC = ("index.html", "app.js", "lathe.js")


def export_web(model, out_dir: str) -> str:
    """Compile `model` (ONNX path/bytes/ModelProto or zoo name) for webgl and write the page to out_dir."""
    import lathe
    from lathe.cli import resolve_model
    from lathe.zoo import cat_image, imagenet_labels

    mod = lathe.compile(resolve_model(model) if isinstance(model, str) else model, target="webgl")
    os.makedirs(out_dir, exist_ok=True)
    mod.save(os.path.join(out_dir, "model"))
    for f in STATIC:
        shutil.copyfile(os.path.join(WEB_DIR, "static" if f != "lathe.js" else "", f), os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "labels.json"), "w") as fh:
        json.dump(imagenet_labels(), fh)
    from PIL import Image

    Image.fromarray(cat_image()).save(os.path.join(out_dir, "cat.png"))
    return out_dir
