"""The `opengl` device: kernels as shaders over RGBA32F textures, through moderngl's headless EGL context.

One context per process, created on first use. Each tensor lives in one texture (tex_shape layout: four
consecutive elements per texel), or in parts of GL_MAX_TEXTURE_SIZE rows when it is taller. Where the
context has OpenGL 4.3, a kernel is a compute shader with one invocation per output texel, stored with
imageStore; otherwise (or with `opengl -shader=fragment`) it is a fragment shader drawing one
full-viewport triangle into its output's framebuffer, as on WebGL2. Both run the same generated body.
Weights are uploaded once, intermediates stay on the GPU, and only the model's outputs are read back.
"""

from __future__ import annotations

import numpy as np

from lathe.codegen.glsl import COMPUTE_GROUP, TEXEL, GLSLRenderer, row_parts, tex_shape
from lathe.errors import ArgumentError, TargetError
from lathe.runtime.glplan import slot_shapes
from lathe.runtime.graph_module import GraphModule
from lathe.target import Target

VERTEX = """#version 330 core
void main() { vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0); }"""  # one triangle covering the viewport
_ctx = None
_programs: dict = {}


def context():
    """The shared moderngl context, made current; lathe.TargetError naming what is missing when GL cannot
    start. Made current on every call: another library in the process (wgpu-native enumerating its GL
    adapters) may have made its own EGL context current, and GL calls would then fail."""
    global _ctx
    if _ctx is not None:
        _ctx.__enter__()
    else:
        try:
            import moderngl
        except ImportError as e:
            raise TargetError(f"target opengl needs the moderngl package (pip install moderngl): {e}") from None
        for version in (430, 330):  # ask for 4.3 (compute shaders) first: NVIDIA's EGL gives what is asked
            try:
                _ctx = moderngl.create_standalone_context(backend="egl", require=version)
                break
            except Exception as e:  # no libEGL, no Mesa driver, no device: moderngl raises plain Exceptions
                error = e
        else:
            raise TargetError(f"target opengl: no headless EGL OpenGL 3.3 context ({error}); install libegl1 "
                              "libegl-mesa0 libgl1-mesa-dri") from None
    return _ctx


def status() -> tuple[bool, str]:
    """(usable, why not) for `lathe targets`."""
    try:
        ctx = context()
    except TargetError as e:
        return False, str(e)
    shaders = "compute" if ctx.version_code >= 430 else "fragment"
    return True, (f"{ctx.info['GL_RENDERER']}, OpenGL {ctx.version_code // 100}.{ctx.version_code // 10 % 10}, "
                  f"{shaders} shaders, GL_MAX_TEXTURE_SIZE {ctx.info['GL_MAX_TEXTURE_SIZE']}")


def shader_kind(target: Target | str | None) -> str:
    """"compute" or "fragment": the `-shader=` option of an opengl target, else compute where GL 4.3 has it."""
    target = Target.parse(target or "opengl")
    kind = target.attrs.get("shader")
    if kind not in (None, "compute", "fragment"):
        raise TargetError(f"target {target}: -shader must be compute or fragment, not {kind!r}")
    have = context().version_code >= 430
    if kind == "compute" and not have:
        raise TargetError(f"target {target}: compute shaders need OpenGL 4.3; this context is "
                          f"{context().info['GL_VERSION']} (use -shader=fragment)")
    return kind or ("compute" if have else "fragment")


CPU_RASTERIZERS = ("llvmpipe", "softpipe", "SwiftShader")  # GL_RENDERER names of drivers running on the CPU


def splits_reductions(target: Target | str | None) -> bool:
    """Whether to split long reductions of small convolutions (graph/layout.py split_reductions): the
    `-split=0|1` option, else on compute shaders of a GPU. On a CPU rasterizer the invocations already
    outnumber the cores, and the extra kernels only cost (EfficientNet-Lite0 on llvmpipe: 175 -> 205 ms)."""
    target = Target.parse(target or "opengl")
    split = target.attrs.get("split", "auto")
    if split not in ("0", "1", "auto"):
        raise TargetError(f"target {target}: -split must be 0, 1 or auto, not {split!r}")
    compute = shader_kind(target) == "compute"
    if split != "auto":
        return split == "1" and compute
    return compute and not any(name in context().info["GL_RENDERER"] for name in CPU_RASTERIZERS)


def max_rows() -> int:
    """Texel rows per texture: GL_MAX_TEXTURE_SIZE. A taller tensor is stored in parts (GLSLRenderer rows)."""
    return (_ctx if _ctx is not None else context()).info["GL_MAX_TEXTURE_SIZE"]  # no make-current per upload


def new_textures(n: int, data: np.ndarray | None = None, shape: tuple = (1, 1)) -> list:
    """The textures for n elements (at least `shape` texels wide and high): one, or parts of max_rows() rows
    when taller; filled with `data` when given."""
    ctx, rows = context(), max_rows()
    w, h = map(max, tex_shape(n), shape)
    if w > ctx.info["GL_MAX_TEXTURE_SIZE"]:
        raise TargetError(f"target opengl: textures {w} texels wide exceed GL_MAX_TEXTURE_SIZE "
                          f"{ctx.info['GL_MAX_TEXTURE_SIZE']}")
    texs = [ctx.texture((w, n), TEXEL, dtype="f4") for _, n in row_parts(h, rows)]
    for tex in texs:
        tex.filter = (0x2600, 0x2600)  # GL_NEAREST
    if data is not None:
        upload(texs, data)
    return texs


def upload(texs: list, data: np.ndarray) -> None:
    """Write data into its tex_shape corner of the textures (rows in order across the parts)."""
    w, h = tex_shape(data.size)
    flat = np.zeros(w * h * TEXEL, np.float32)
    flat[:data.size] = np.asarray(data, np.float32).ravel()
    for tex, (r, n) in zip(texs, row_parts(h, max_rows())):
        tex.write(flat[r * w * TEXEL:(r + n) * w * TEXEL].tobytes(), viewport=(0, 0, w, n))


def download(texs: list, shape: tuple, dtype: str) -> np.ndarray:
    context()
    n = int(np.prod(shape, dtype=np.int64))
    w, h = tex_shape(n)
    flat = [np.frombuffer(tex.read(), np.float32).reshape(tex.height, tex.width, TEXEL)[:n, :w]
            for tex, (_, n) in zip(texs, row_parts(h, max_rows()))]
    return np.concatenate(flat).ravel()[:n].astype(dtype).reshape(shape)


class GLKernel:
    """One compiled shader; `run(textures)` writes the last (the output) texture."""

    def __init__(self, func, shader: str = "fragment"):
        self.name, self.func, self.compute = func.name, func, shader == "compute"
        rows = max_rows()
        renderer = GLSLRenderer("430" if self.compute else "330", rows)
        self.source = renderer.render(func)
        if renderer.outputs[0] is not func.params[-1]:
            raise TargetError(f"kernel {func.name}: on opengl the output must be the last argument")
        if self.source not in _programs:
            ctx = context()
            try:
                _programs[self.source] = (ctx.compute_shader(self.source) if self.compute else
                                          ctx.program(vertex_shader=VERTEX, fragment_shader=self.source))
            except Exception as e:
                key = "GL_MAX_COMPUTE_TEXTURE_IMAGE_UNITS" if self.compute else "GL_MAX_TEXTURE_IMAGE_UNITS"
                samplers, limit = sum(renderer.parts(p) for p in func.params[:-1]), ctx.info.get(key, 16)
                if samplers > limit:
                    raise TargetError(f"kernel {func.name}: reads {samplers} textures (inputs taller than {rows} "
                                      f"rows come in parts), over this GL's limit of {limit} per shader") from None
                raise TargetError(f"kernel {func.name}: the GLSL shader does not compile: {e}") from None
        self.program = _programs[self.source]
        self.units = []  # (texture unit, input position, part); the compiler drops samplers the shader never reads
        for k, p in enumerate(func.params[:-1]):
            for j, name in enumerate(renderer.samplers(p)):
                uniform = self.program.get(name, None)
                if uniform is not None:
                    uniform.value = len(self.units)  # set once: a program keeps its uniforms
                    self.units.append((len(self.units), k, j))
        self.width, h = tex_shape(func.params[-1].size)
        # one draw per part of the output: (its first row, its rows)
        self.parts = row_parts(h, rows)
        self.row0 = self.program["lathe_row0"] if len(self.parts) > 1 else None
        self.vao = None if self.compute else context().vertex_array(self.program, [])
        self.fbos: dict = {}

    def run(self, textures: list) -> None:
        """Read the inputs' textures (a list of parts per argument), write the output's."""
        for unit, k, j in self.units:
            textures[k][j].use(location=unit)
        w = self.width
        for out, (row0, rows) in zip(textures[-1], self.parts):
            if self.row0 is not None:
                self.row0.value = row0
            if self.compute:
                out.bind_to_image(0, read=False, write=True)
                self.program.run(-(-w // COMPUTE_GROUP[0]), -(-rows // COMPUTE_GROUP[1]))
                self.program.ctx.memory_barrier()  # the next kernel's texelFetch (or a read-back) sees the stores
                continue
            fbo = self.fbos.get(id(out))
            if fbo is None:  # a pooled texture may be larger than this output: draw only its corner
                fbo = self.fbos[id(out)] = (self.program.ctx.framebuffer(color_attachments=[out]), out)
                fbo[0].viewport = (0, 0, w, rows)
            fbo[0].use()
            self.vao.render(mode=4, vertices=3)  # GL_TRIANGLES

    def __call__(self, *arrays: np.ndarray) -> None:
        """NumPy in, NumPy out: the output (the last array) is filled in place, like the CPU kernels."""
        if len(arrays) != len(self.func.params):
            raise ArgumentError(f"kernel {self.name} takes {len(self.func.params)} arrays, got {len(arrays)}")
        texs = [new_textures(a.size, a) for a in arrays[:-1]] + [new_textures(arrays[-1].size)]
        self.run(texs)
        arrays[-1][...] = download(texs[-1], arrays[-1].shape, str(arrays[-1].dtype))
        for t in texs[-1]:  # these textures die now; a later one may reuse the id
            if id(t) in self.fbos:
                self.fbos.pop(id(t))[0].release()
        for t in (t for parts in texs for t in parts):
            t.release()


def build_opengl(func, target=None) -> GLKernel:
    return GLKernel(func, shader_kind(target))


class GLGraphModule(GraphModule):
    """A model whose values live in textures; inputs uploaded per run, outputs read back."""

    def __init__(self, spec: dict, params: dict, kernels: dict, source: str = ""):
        self.spec, self.source, self._lib, self.target, self.stats = spec, source, None, spec["target"], {}
        self._params = {k: np.ascontiguousarray(v) for k, v in params.items()}
        self._input_names = [i["name"] for i in spec["inputs"]]
        self._bufs = {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in spec["inputs"]}
        sizes = {k: int(np.prod(v["shape"], dtype=np.int64)) for k, v in spec["values"].items()}
        self._tex = {k: new_textures(a.size, a) for k, a in self._params.items()}  # weights: uploaded once
        self._tex.update({name: new_textures(sizes[name]) for name in self._input_names})
        # the memory plan's slots hold values never live at once (and never a kernel's input and output
        # together): one texture per slot, as tall as its largest value
        pool = {slot: new_textures(1, shape=wh) for slot, wh in slot_shapes(spec, sizes).items()}
        used = {a for st in spec["steps"] for a in st["args"]} | {o["name"] for o in spec["outputs"]}
        for name, n in sizes.items():
            if name not in self._tex and name in used:
                slot = spec["slot_of"].get(name)
                self._tex[name] = pool[slot] if slot is not None else new_textures(n)
        self._steps = [(kernels[st["kernel"]], [self._tex[a] for a in st["args"]]) for st in spec["steps"]]

    def _execute(self) -> None:
        context()
        for name in self._input_names:
            upload(self._tex[name], self._bufs[name])
        for kernel, texs in self._steps:
            kernel.run(texs)

    def _run_step(self, k: int) -> None:
        kernel, texs = self._steps[k]
        kernel.run(texs)
        context().finish()

    def _output(self, name: str) -> np.ndarray:
        if name in self._params:
            return np.array(self._params[name])
        v = self.spec["values"][name]
        return download(self._tex[name], tuple(v["shape"]), v["dtype"])

    def save(self, path: str) -> None:
        raise TargetError("target opengl: saving compiled models is not supported yet")


def graph_from_funcs(spec: dict, params: dict, funcs: list) -> GLGraphModule:
    shader = shader_kind(spec["target"])
    kernels = {f.name: GLKernel(f, shader) for f in funcs}
    return GLGraphModule(spec, params, kernels, "\n".join(k.source for k in kernels.values()))
