"""The launch plan of a GL-scheduled model as plain data, for runtimes outside this process (web/lathe.js).

It mirrors what runtime/opengl.py builds from objects: one RGBA32F texture per parameter and per input,
one per memory-plan slot (large enough for each of its values' corners), and per step a program, its samplers and the
rows of the output texture it draws. Every value records its texture's width, height and channels per
texel (4: consecutive elements of the flat order).
"""

from __future__ import annotations

import numpy as np

from lathe.codegen.glsl import TEXEL, GLSLRenderer, tex_shape
from lathe.errors import TargetError

ALIGN = 64  # bytes between parameters in the blob: every Float32Array view stays aligned


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def slot_shapes(spec: dict, sizes: dict) -> dict:
    """Memory-plan slot -> (width, height) of its texture: every value in the slot fits in its tex_shape corner."""
    shapes: dict = {}
    for name, slot in spec["slot_of"].items():
        shapes[slot] = tuple(map(max, shapes.get(slot, (1, 1)), tex_shape(sizes[name])))
    return shapes


def build_plan(spec: dict, params: dict, funcs: list, dialect: str = "es") -> tuple[dict, bytes, list[str]]:
    """(plan, params blob, shader sources) for `spec`, the graph compiler's memory-planned steps."""
    programs, kernel_index, samplers_of = [], {}, {}
    for f in funcs:
        renderer = GLSLRenderer(dialect)
        source = renderer.render(f)
        if renderer.outputs[0] is not f.params[-1]:
            raise TargetError(f"kernel {f.name}: on GL targets the output must be the last argument")
        kernel_index[f.name] = len(programs)
        samplers_of[f.name] = [renderer.names[id(p)][1] for p in f.params[:-1]]
        programs.append(source)
    sizes = {k: _size(v["shape"]) for k, v in spec["values"].items()}
    textures: list[dict] = []

    def texture(shape: tuple) -> int:
        textures.append({"width": shape[0], "height": shape[1], "channels": TEXEL})
        return len(textures) - 1

    values: dict = {}
    blob = bytearray()
    for name, arr in params.items():
        pad = (-len(blob)) % ALIGN
        blob += b"\0" * pad
        data = np.zeros(-(-arr.size // TEXEL) * TEXEL, "<f4")  # whole texels; fp32 (ints exact to 2^24)
        data[:arr.size] = np.ravel(arr)
        data = data.tobytes()
        values[name] = {"texture": texture(tex_shape(arr.size)), "offset": len(blob), "size": int(arr.size)}
        blob += data
    for io in spec["inputs"]:
        values[io["name"]] = {"texture": texture(tex_shape(sizes[io["name"]])), "size": sizes[io["name"]]}
    slot_texture = {slot: texture(wh) for slot, wh in sorted(slot_shapes(spec, sizes).items())}
    used = {a for st in spec["steps"] for a in st["args"]} | {o["name"] for o in spec["outputs"]}
    for name in sizes:
        if name not in values and name in used:
            slot = spec["slot_of"].get(name)
            tex = slot_texture[slot] if slot is not None else texture(tex_shape(sizes[name]))
            values[name] = {"texture": tex, "size": sizes[name]}
    for name, v in values.items():
        v["width"], v["height"] = tex_shape(v["size"])  # the value's corner of its texture
        v["shape"] = list(spec["values"][name]["shape"]) if name in spec["values"] else list(params[name].shape)
    steps = []
    for st in spec["steps"]:
        *ins, out = st["args"]
        steps.append({"kernel": st["kernel"], "program": kernel_index[st["kernel"]],
                      "samplers": dict(zip(samplers_of[st["kernel"]], ins)), "output": out,
                      "width": tex_shape(sizes[out])[0], "rows": tex_shape(sizes[out])[1]})
    plan = {"format": "lathe-webgl-2", "inputs": spec["inputs"], "outputs": spec["outputs"],
            "textures": textures, "values": values, "steps": steps, "programs": len(programs)}
    return plan, bytes(blob), programs
