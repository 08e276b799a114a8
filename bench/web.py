"""lathe `webgl` and `webgpu` against TensorFlow.js (WebGL backend) and onnxruntime-web (WebGL and WebGPU
providers), one Chromium.

    python bench/web.py [--runs 100] [--models efficientnet_lite0,resnet18] [--only lathe-webgpu,...]

All run in one headless Chromium session (SwiftShader WebGL2 and Dawn-on-SwiftShader WebGPU unless the browser
finds a GPU), each timed with performance.now() inside the page; each run ends when its output is on the CPU.
tf.js runs the same network rebuilt from tf.js layers (explicit ZeroPadding2D, so the padding is ONNX's) with
the same weights; onnxruntime-web runs the same ONNX file. --profile adds lathe webgpu's per-kernel times
(each kernel submitted alone and waited for) grouped by operator. Every output is checked against ONNX
Runtime (1e-3 of max |output|) before timing is trusted. Needs `npm install` in bench/web (make bench does it).
Saves bench/results/web-<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import lathe  # noqa: E402
import lathe.rpc  # noqa: E402
from bench.common import save  # noqa: E402
from lathe.zoo import get_model  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
PEERS = {"tfjs-webgl": "benchTfjs(d, r, w)", "onnxruntime-web-webgl": "benchOrt(d, r, w, 'webgl')",
         "onnxruntime-web-webgpu": "benchOrt(d, r, w, 'webgpu')"}  # column -> the call in bench.js
COLUMNS = ("lathe-webgpu", "lathe-webgl", *PEERS)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the page's requests are not news
        pass


def tfjs_network(proto) -> tuple[dict, bytes]:
    """The ONNX graph as tf.js layers (NHWC) plus their weights: {layers, ...} and one float32 blob."""
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    blob, layers = bytearray(), []

    def weights(*arrays) -> list:
        out = []
        for a in arrays:
            out.append([len(blob), list(a.shape)])
            blob.extend(np.ascontiguousarray(a, np.float32).tobytes())
        return out

    for k, n in enumerate(proto.graph.node):
        a = {x.name: x for x in n.attribute}
        name, ins = f"l{k}", [i for i in n.input if i not in init]
        if n.op_type == "Conv":
            w = init[n.input[1]]
            b = init[n.input[2]] if len(n.input) > 2 else np.zeros(w.shape[0], np.float32)
            pads, strides, group = list(a["pads"].ints), list(a["strides"].ints), a["group"].i if "group" in a else 1
            src = ins[0]
            if any(pads):
                layers.append({"kind": "zeroPadding2d", "name": name + "p", "inputs": [src], "output": name + "p",
                               "config": {"padding": [[pads[0], pads[2]], [pads[1], pads[3]]]}, "weights": []})
                src = name + "p"
            conf = {"kernelSize": list(w.shape[2:]), "strides": strides, "padding": "valid"}
            if group == 1:
                kind, kernel = "conv2d", w.transpose(2, 3, 1, 0)
                conf["filters"] = w.shape[0]
            elif group == w.shape[0] and w.shape[1] == 1:
                kind, kernel = "depthwiseConv2d", w.transpose(2, 3, 0, 1)
            else:
                raise ValueError(f"{n.name}: grouped convolution with {group} groups has no tf.js layer here")
            layers.append({"kind": kind, "name": name, "inputs": [src], "output": n.output[0], "config": conf,
                           "weights": weights(kernel, b)})
        elif n.op_type == "BatchNormalization":
            g, beta, mean, var = (init[i] for i in n.input[1:])
            layers.append({"kind": "batchNormalization", "name": name, "inputs": ins, "output": n.output[0],
                           "config": {"epsilon": a["epsilon"].f if "epsilon" in a else 1e-5, "axis": -1},
                           "weights": weights(g, beta, mean, var)})
        elif n.op_type in ("Relu", "Clip"):
            hi = float(init[n.input[2]].reshape(-1)[0]) if n.op_type == "Clip" and len(n.input) > 2 else None
            assert n.op_type == "Relu" or (len(n.input) > 1 and float(init[n.input[1]].reshape(-1)[0]) == 0.0), n.name
            layers.append({"kind": "reLU", "name": name, "inputs": ins, "output": n.output[0],
                           "config": {"maxValue": hi} if hi is not None else {}, "weights": []})
        elif n.op_type == "Add":
            layers.append({"kind": "add", "name": name, "inputs": ins, "output": n.output[0], "config": {},
                           "weights": []})
        elif n.op_type == "MaxPool":
            pads = list(a["pads"].ints) if "pads" in a else [0, 0, 0, 0]
            src = ins[0]
            if any(pads):  # after a ReLU, zero padding equals -inf padding for a max
                layers.append({"kind": "zeroPadding2d", "name": name + "p", "inputs": [src], "output": name + "p",
                               "config": {"padding": [[pads[0], pads[2]], [pads[1], pads[3]]]}, "weights": []})
                src = name + "p"
            layers.append({"kind": "maxPooling2d", "name": name, "inputs": [src], "output": n.output[0],
                           "config": {"poolSize": list(a["kernel_shape"].ints), "strides": list(a["strides"].ints),
                                      "padding": "valid"}, "weights": []})
        elif n.op_type == "GlobalAveragePool":
            layers.append({"kind": "globalAveragePooling2d", "name": name, "inputs": ins, "output": n.output[0],
                           "config": {}, "weights": []})
        elif n.op_type == "Flatten":  # globalAveragePooling2d already gives [N, C]
            layers.append({"kind": "activation", "name": name, "inputs": ins, "output": n.output[0],
                           "config": {"activation": "linear"}, "weights": []})
        elif n.op_type == "Gemm":
            w, b = init[n.input[1]], init[n.input[2]]
            w = w.T if a.get("transB") is not None and a["transB"].i else w
            layers.append({"kind": "dense", "name": name, "inputs": ins, "output": n.output[0],
                           "config": {"units": w.shape[1]}, "weights": weights(w, b)})
        else:
            raise ValueError(f"{n.op_type}: no tf.js layer mapping in bench/web.py")
    inp = proto.graph.input[0]
    spec = {"input_name": inp.name, "input": [1, 224, 224, 3], "layers": layers, "output": proto.graph.output[0].name}
    return spec, bytes(blob)


def by_op(rows: list) -> dict:
    """Profile rows -> {operator group: [ms, kernels]}, largest first, printed as it goes."""
    groups: dict = {}
    for r in rows:
        g = groups.setdefault(r["ops"], [0.0, 0])
        g[0] += r["ms"]
        g[1] += 1
    total = sum(g[0] for g in groups.values())
    out = dict(sorted(groups.items(), key=lambda kv: -kv[1][0]))
    for ops, (ms, n) in list(out.items())[:8]:
        print(f"    {ops:40s} {n:3d} kernels {ms:9.1f} ms {100 * ms / total:5.1f}%")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default="efficientnet_lite0,resnet18")
    ap.add_argument("--only", default=",".join(COLUMNS), help="columns to run, of " + ",".join(COLUMNS))
    ap.add_argument("--profile", action="store_true", help="per-kernel times of lathe webgpu")
    args = ap.parse_args()
    only = args.only.split(",")
    if not os.path.isdir(os.path.join(HERE, "node_modules")):
        sys.exit("bench/web.py: run `npm install` in bench/web first (make bench does)")
    import json

    import onnxruntime as ort

    session = lathe.rpc.browser()
    site = tempfile.mkdtemp(prefix="lathe-webbench-")
    for f in ("bench.html", "bench.js", "node_modules"):
        os.symlink(os.path.join(HERE, f), os.path.join(site, f))
    handler = functools.partial(Quiet, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = session.page.context.new_page()
    page.goto(f"http://127.0.0.1:{server.server_address[1]}/bench.html")
    results = {"browser": session.info(), "runs": args.runs, "models": {}}
    for name in args.models.split(","):
        proto = get_model(name)
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        want = ref.run(None, {ref.get_inputs()[0].name: x})[0].ravel()
        d = os.path.join(site, name)
        os.makedirs(d)
        spec, blob = tfjs_network(proto)
        for f, data in (("tfjs.json", json.dumps(spec).encode()), ("tfjs.bin", blob),
                        ("model.onnx", proto.SerializeToString()), ("input_nchw.bin", x.tobytes()),
                        ("input_nhwc.bin", np.ascontiguousarray(x.transpose(0, 2, 3, 1)).tobytes())):
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(data)
        row = {}
        for target in ("webgpu", "webgl"):
            if f"lathe-{target}" not in only:
                continue
            mod = lathe.compile(proto, target=target).attach(session)
            got = mod(x).ravel()
            row[f"lathe-{target}"] = session.time(mod._loaded()[1], args.runs, args.warmup) | {"output": got.tolist()}
            if target == "webgpu" and args.profile:
                row["lathe-webgpu"]["profile_by_op"] = by_op(mod.profile({proto.graph.input[0].name: x}, repeat=3))
        for peer, call in PEERS.items():
            if peer not in only:
                continue
            try:
                row[peer] = page.evaluate(f"([d, r, w]) => {call}", [f"{name}/", args.runs, args.warmup])
            except Exception as e:  # noqa: BLE001 - a peer failing is reported, not fatal
                row[peer] = {"error": str(e).splitlines()[0]}
        for peer, r in row.items():
            if "output" in r:
                out = np.asarray(r.pop("output"), np.float32)
                r["max_error_vs_ort"] = float(np.abs(out - want).max() / np.abs(want).max())
            r.pop("times_ms", None)
            print(f"{name:20s} {peer:24s} " + (f"median {r['median_ms']:9.1f} ms  mean {r['mean_ms']:9.1f} ms  "
                                               f"error {r['max_error_vs_ort']:.1e}" if "median_ms" in r
                                               else r["error"]), flush=True)
        results["models"][name] = row
    print("saved", save("web", results))
    page.close()
    server.shutdown()
    session.close()


if __name__ == "__main__":
    main()
