"""The `opengl` device: kernels as fragment shaders over RGBA32F textures, through moderngl's headless EGL context.

One context per process, created on first use. Each tensor lives in one texture (tex_shape layout: four
consecutive elements per texel);
a kernel draws one full-viewport triangle into its output's framebuffer. Weights are uploaded once,
intermediates stay on the GPU, and only the model's outputs are read back.
"""

from __future__ import annotations

import numpy as np

from lathe.codegen.glsl import TEXEL, GLSLRenderer, tex_shape
from lathe.errors import ArgumentError, TargetError
from lathe.runtime.glplan import slot_shapes
from lathe.runtime.graph_module import GraphModule

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
        try:
            _ctx = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as e:  # no libEGL, no Mesa driver, no device: moderngl raises plain Exceptions
            raise TargetError(f"target opengl: no headless EGL OpenGL 3.3 context ({e}); install libegl1 "
                              "libegl-mesa0 libgl1-mesa-dri") from None
    return _ctx


def status() -> tuple[bool, str]:
    """(usable, why not) for `lathe targets`."""
    try:
        ctx = context()
    except TargetError as e:
        return False, str(e)
    return True, f"{ctx.info['GL_RENDERER']}, GL_MAX_TEXTURE_SIZE {ctx.info['GL_MAX_TEXTURE_SIZE']}"


def new_texture(n: int, data: np.ndarray | None = None, shape: tuple = (1, 1)):
    """A texture for n elements (at least `shape` texels wide and high), filled with `data` when given."""
    ctx = context()
    limit = ctx.info["GL_MAX_TEXTURE_SIZE"]
    w, h = map(max, tex_shape(n), shape)
    if h > limit:
        raise TargetError(f"target opengl: a tensor of {n} elements needs a {w}x{h} texture, over "
                          f"GL_MAX_TEXTURE_SIZE {limit}")
    tex = ctx.texture((w, h), TEXEL, dtype="f4")
    tex.filter = (0x2600, 0x2600)  # GL_NEAREST
    if data is not None:
        upload(tex, data)
    return tex


def upload(tex, data: np.ndarray) -> None:
    """Write data into its tex_shape corner of tex."""
    w, h = tex_shape(data.size)
    flat = np.zeros(w * h * TEXEL, np.float32)
    flat[:data.size] = np.asarray(data, np.float32).ravel()
    tex.write(flat.tobytes(), viewport=(0, 0, w, h))


def download(tex, shape: tuple, dtype: str) -> np.ndarray:
    context()
    n = int(np.prod(shape, dtype=np.int64))
    w, h = tex_shape(n)
    texels = np.frombuffer(tex.read(), np.float32).reshape(tex.height, tex.width, TEXEL)
    return texels[:h, :w].ravel()[:n].astype(dtype).reshape(shape)


class GLKernel:
    """One compiled fragment shader; `run(textures)` draws into the last (the output) texture."""

    def __init__(self, func):
        self.name, self.func = func.name, func
        renderer = GLSLRenderer()
        self.source = renderer.render(func)
        if renderer.outputs[0] is not func.params[-1]:
            raise TargetError(f"kernel {func.name}: on opengl the output must be the last argument")
        self.uniforms = [renderer.names[id(p)][1] for p in func.params[:-1]]  # names in the shader
        if self.source not in _programs:
            ctx = context()
            try:
                _programs[self.source] = ctx.program(vertex_shader=VERTEX, fragment_shader=self.source)
            except Exception as e:
                raise TargetError(f"kernel {func.name}: the GLSL shader does not compile: {e}") from None
        self.program = _programs[self.source]
        self.vao = context().vertex_array(self.program, [])
        self.fbos: dict = {}

    def run(self, textures: list) -> None:
        *ins, out = textures
        for unit, (name, tex) in enumerate(zip(self.uniforms, ins)):
            uniform = self.program.get(name, None)  # the compiler drops a sampler the shader never reads
            if uniform is not None:
                tex.use(location=unit)
                uniform.value = unit
        fbo = self.fbos.get(id(out))
        if fbo is None:  # a pooled texture may be larger than this output: draw only its corner
            fbo = self.fbos[id(out)] = (context().framebuffer(color_attachments=[out]), out)
            fbo[0].viewport = (0, 0, *tex_shape(self.func.params[-1].size))
        fbo[0].use()
        self.vao.render(mode=4, vertices=3)  # GL_TRIANGLES

    def __call__(self, *arrays: np.ndarray) -> None:
        """NumPy in, NumPy out: the output (the last array) is filled in place, like the CPU kernels."""
        if len(arrays) != len(self.func.params):
            raise ArgumentError(f"kernel {self.name} takes {len(self.func.params)} arrays, got {len(arrays)}")
        texs = [new_texture(a.size, a) for a in arrays[:-1]] + [new_texture(arrays[-1].size)]
        self.run(texs)
        arrays[-1][...] = download(texs[-1], arrays[-1].shape, str(arrays[-1].dtype))
        self.fbos.pop(id(texs[-1]))[0].release()  # these textures die now; a later one may reuse the id
        for t in texs:
            t.release()


def build_opengl(func, target=None) -> GLKernel:
    return GLKernel(func)


class GLGraphModule(GraphModule):
    """A model whose values live in textures; inputs uploaded per run, outputs read back."""

    def __init__(self, spec: dict, params: dict, kernels: dict, source: str = ""):
        self.spec, self.source, self._lib, self.target, self.stats = spec, source, None, spec["target"], {}
        self._params = {k: np.ascontiguousarray(v) for k, v in params.items()}
        self._input_names = [i["name"] for i in spec["inputs"]]
        self._bufs = {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in spec["inputs"]}
        sizes = {k: int(np.prod(v["shape"], dtype=np.int64)) for k, v in spec["values"].items()}
        self._tex = {k: new_texture(a.size, a) for k, a in self._params.items()}  # weights: uploaded once
        self._tex.update({name: new_texture(sizes[name]) for name in self._input_names})
        # the memory plan's slots hold values never live at once (and never a kernel's input and output
        # together): one texture per slot, as tall as its largest value
        pool = {slot: new_texture(1, shape=wh) for slot, wh in slot_shapes(spec, sizes).items()}
        used = {a for st in spec["steps"] for a in st["args"]} | {o["name"] for o in spec["outputs"]}
        for name, n in sizes.items():
            if name not in self._tex and name in used:
                slot = spec["slot_of"].get(name)
                self._tex[name] = pool[slot] if slot is not None else new_texture(n)
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
    kernels = {f.name: GLKernel(f) for f in funcs}
    return GLGraphModule(spec, params, kernels, "\n".join(k.source for k in kernels.values()))
