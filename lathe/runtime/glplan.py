"""The launch plan of a GL-scheduled model as plain data, for runtimes outside this process (web/lathe.js).

It mirrors what runtime/opengl.py builds from objects: one RGBA32F texture per parameter and per input,
one per memory-plan slot (large enough for each of its values' corners), and per step a program, its samplers and the
rows of the output texture it draws. Every value records its textures, width, height and channels per
texel (4: consecutive elements of the flat order). A value taller than ROWS texel rows lives in several
textures ("parts") of ROWS rows, as on opengl: its texel row r is row r % ROWS of part r // ROWS.
"""

from __future__ import annotations

import numpy as np

from lathe.codegen.glsl import TEXEL, GLSLRenderer, row_parts, tex_shape
from lathe.errors import TargetError

ALIGN = 64  # bytes between parameters in the blob: every Float32Array view stays aligned
ROWS = 4096  # texel rows per texture: the MAX_TEXTURE_SIZE of every WebGL2 device we know (the spec's floor is 2048)


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def slot_shapes(spec: dict, sizes: dict) -> dict:
    """Memory-plan slot -> (width, height) of its texture: every value in the slot fits in its tex_shape corner."""
    shapes: dict = {}
    for name, slot in spec["slot_of"].items():
        shapes[slot] = tuple(map(max, shapes.get(slot, (1, 1)), tex_shape(sizes[name])))
    return shapes


def build_plan(spec: dict, params: dict, funcs: list, dialect: str = "es",
               rows: int | None = None) -> tuple[dict, bytes, list[str]]:
    """(plan, params blob, shader sources) for `spec`, the graph compiler's memory-planned steps; textures of
    at most `rows` (default ROWS) texel rows."""
    rows = rows or ROWS
    programs, kernel_index, samplers_of = [], {}, {}
    for f in funcs:
        renderer = GLSLRenderer(dialect, rows)
        source = renderer.render(f)
        if renderer.outputs[0] is not f.params[-1]:
            raise TargetError(f"kernel {f.name}: on GL targets the output must be the last argument")
        kernel_index[f.name] = len(programs)
        samplers_of[f.name] = [(name, k, j) for k, p in enumerate(f.params[:-1])
                               for j, name in enumerate(renderer.samplers(p))]
        programs.append(source)
    sizes = {k: _size(v["shape"]) for k, v in spec["values"].items()}
    textures: list[dict] = []

    def texture(shape: tuple) -> list[int]:
        """The textures (parts of at most `rows` rows) of one width x height texture."""
        first = len(textures)
        textures.extend({"width": shape[0], "height": n, "channels": TEXEL} for _, n in row_parts(shape[1], rows))
        return list(range(first, len(textures)))

    values: dict = {}
    blob = bytearray()
    for name, arr in params.items():
        pad = (-len(blob)) % ALIGN
        blob += b"\0" * pad
        data = np.zeros(-(-arr.size // TEXEL) * TEXEL, "<f4")  # whole texels; fp32 (ints exact to 2^24)
        data[:arr.size] = np.ravel(arr)
        data = data.tobytes()
        values[name] = {"textures": texture(tex_shape(arr.size)), "offset": len(blob), "size": int(arr.size)}
        blob += data
    for io in spec["inputs"]:
        values[io["name"]] = {"textures": texture(tex_shape(sizes[io["name"]])), "size": sizes[io["name"]]}
    slot_texture = {slot: texture(wh) for slot, wh in sorted(slot_shapes(spec, sizes).items())}
    used = {a for st in spec["steps"] for a in st["args"]} | {o["name"] for o in spec["outputs"]}
    for name in sizes:
        if name not in values and name in used:
            slot = spec["slot_of"].get(name)
            texs = slot_texture[slot] if slot is not None else texture(tex_shape(sizes[name]))
            values[name] = {"textures": texs[:len(row_parts(tex_shape(sizes[name])[1], rows))], "size": sizes[name]}
    for name, v in values.items():
        v["width"], v["height"] = tex_shape(v["size"])  # the value's corner of its textures, rows across parts
        v["shape"] = list(spec["values"][name]["shape"]) if name in spec["values"] else list(params[name].shape)
    steps = []
    for st in spec["steps"]:
        *ins, out = st["args"]
        steps.append({"kernel": st["kernel"], "program": kernel_index[st["kernel"]],
                      "samplers": {name: [ins[k], j] for name, k, j in samplers_of[st["kernel"]]}, "output": out,
                      "width": tex_shape(sizes[out])[0], "rows": tex_shape(sizes[out])[1]})
    plan = {"format": "lathe-webgl-3", "inputs": spec["inputs"], "outputs": spec["outputs"], "rows": rows,
            "textures": textures, "values": values, "steps": steps, "programs": len(programs)}
    return plan, bytes(blob), programs
