// lathe's WebGL2 runtime: runs a lathe `webgl` artifact (graph.json plan, params.bin, kernels.json).
// Mirrors lathe/runtime/opengl.py: RGBA32F textures (four consecutive elements per texel) in the plan's
// layout, weights uploaded once, memory-plan
// slots shared as textures, one full-viewport triangle per kernel (per part of its output: a value taller
// than plan.rows texel rows lives in several textures). Plain ES module, no dependencies.

const VERTEX = `#version 300 es
void main() { vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0); }`;

export class LatheError extends Error {}

// {median_ms, mean_ms, times_ms} of run times in milliseconds: what every runtime's time() returns
export function timing(times) {
  const sorted = [...times].sort((a, b) => a - b), mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return {median_ms: median, mean_ms: times.reduce((a, b) => a + b, 0) / times.length, times_ms: times};
}

// The responses for `files` of an artifact directory at `url`; a LatheError names a file that did not come
export async function fetchArtifact(url, files) {
  const base = url.endsWith('/') ? url : url + '/';
  return Promise.all(files.map(async (f) => {
    const r = await fetch(base + f);
    if (!r.ok) throw new LatheError(`lathe: ${base + f}: HTTP ${r.status}`);
    return r;
  }));
}

// A WebGL2 context able to render to float textures, or a LatheError saying what the browser lacks.
export function createContext(canvas = new OffscreenCanvas(1, 1)) {
  const gl = canvas.getContext('webgl2', {antialias: false, depth: false, stencil: false,
                                          powerPreference: 'high-performance'});
  if (!gl) throw new LatheError('lathe: this browser has no WebGL2 (try a current Chrome, Firefox or Safari, ' +
                                'or enable hardware acceleration)');
  if (!gl.getExtension('EXT_color_buffer_float'))
    throw new LatheError('lathe: WebGL2 here lacks EXT_color_buffer_float; kernels cannot write float textures');
  return gl;
}

export class Model {
  // plan: graph.json; params: ArrayBuffer (params.bin); programs: GLSL ES sources (kernels.json)
  static async create(gl, plan, params, programs) {
    const m = new Model(gl, plan);
    await m.compile(programs);
    m.upload(params);
    return m;
  }

  constructor(gl, plan) {
    if (plan.format !== 'lathe-webgl-3') throw new LatheError(`lathe: artifact format ${plan.format}, this runtime reads lathe-webgl-3 (recompile the model)`);
    this.gl = gl; this.plan = plan;
    const limit = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    this.textures = plan.textures.map((t, i) => {
      if (t.width > limit || t.height > limit)
        throw new LatheError(`lathe: texture ${i} is ${t.width}x${t.height}, over MAX_TEXTURE_SIZE ${limit}`);
      const tex = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32F, t.width, t.height);
      for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
      return tex;
    });
    this.framebuffers = new Map();  // texture index -> framebuffer drawing into it
    this.vao = gl.createVertexArray();
  }

  async compile(sources) {
    const gl = this.gl, parallel = gl.getExtension('KHR_parallel_shader_compile');
    const vs = this.shader(gl.VERTEX_SHADER, VERTEX, 'vertex');
    // compile and link everything first, then query: the driver may work on all of them at once
    const programs = sources.map((src, i) => {
      const fs = this.shader(gl.FRAGMENT_SHADER, src, `program ${i}`);
      const prog = gl.createProgram();
      gl.attachShader(prog, vs); gl.attachShader(prog, fs); gl.linkProgram(prog);
      return {prog, fs, i};
    });
    if (parallel) {
      while (!programs.every(p => gl.getProgramParameter(p.prog, parallel.COMPLETION_STATUS_KHR)))
        await new Promise(r => setTimeout(r, 5));
    }
    for (const p of programs) {
      if (!gl.getProgramParameter(p.prog, gl.LINK_STATUS)) {
        const kernel = this.plan.steps.find(s => s.program === p.i)?.kernel ?? `program ${p.i}`;
        throw new LatheError(`lathe: kernel ${kernel} does not compile: ${gl.getShaderInfoLog(p.fs) ||
                             gl.getProgramInfoLog(p.prog)}`);
      }
    }
    this.programs = programs.map(p => p.prog);
    this.steps = this.plan.steps.map(st => ({
      program: this.programs[st.program], width: st.width, rows: st.rows,
      output: this.plan.values[st.output].textures,
      row0: gl.getUniformLocation(this.programs[st.program], 'lathe_row0'),  // null: the output is one part
      samplers: Object.entries(st.samplers).map(([uniform, [value, part]]) =>
        [gl.getUniformLocation(this.programs[st.program], uniform), this.plan.values[value].textures[part]])
        .filter(([loc]) => loc !== null),  // the GLSL compiler drops samplers a shader never reads
    }));
  }

  shader(type, source, what) {
    const gl = this.gl, s = gl.createShader(type);
    gl.shaderSource(s, source); gl.compileShader(s);
    return s;  // errors are read after linking (reading them now would wait for the compiler)
  }

  upload(params) {
    for (const v of Object.values(this.plan.values)) {
      if (v.offset !== undefined) this.write(v, new Float32Array(params, v.offset, Math.ceil(v.size / 4) * 4));
    }
  }

  // data: Float32Array of v.size elements, written four per texel into v's textures in row-major texel order
  write(v, data) {
    const gl = this.gl, texels = Math.ceil(v.size / 4), perPart = this.plan.rows * v.width;
    if (data.length < texels * 4) {  // the last texel is partly padding
      const padded = new Float32Array(texels * 4);
      padded.set(data);
      data = padded;
    }
    v.textures.forEach((tex, part) => {
      const first = part * perPart, n = Math.min(perPart, texels - first);
      const full = Math.floor(n / v.width), rest = n - full * v.width;
      gl.bindTexture(gl.TEXTURE_2D, this.textures[tex]);
      if (full) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, v.width, full, gl.RGBA, gl.FLOAT, data, first * 4);
      if (rest) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, full, rest, 1, gl.RGBA, gl.FLOAT, data,
                                 (first + full * v.width) * 4);
    });
  }

  setInput(name, data) {
    const v = this.plan.values[name];
    if (!v || !this.plan.inputs.some(i => i.name === name)) throw new LatheError(`lathe: ${name} is not an input`);
    if (data.length !== v.size) throw new LatheError(`lathe: input ${name} has ${data.length} elements, ` +
                                                     `the model takes ${v.size}`);
    this.write(v, data instanceof Float32Array ? data : Float32Array.from(data));
  }

  framebuffer(tex) {
    let fb = this.framebuffers.get(tex);
    if (!fb) {
      const gl = this.gl;
      fb = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, this.textures[tex], 0);
      const status = gl.checkFramebufferStatus(gl.FRAMEBUFFER);
      if (status !== gl.FRAMEBUFFER_COMPLETE) throw new LatheError(`lathe: cannot render to an RGBA32F texture ` +
                                                                   `(framebuffer status 0x${status.toString(16)})`);
      this.framebuffers.set(tex, fb);
    }
    return fb;
  }

  run() {
    this.gl.bindVertexArray(this.vao);
    for (const st of this.steps) this.draw(st);
  }

  draw(st) {
    const gl = this.gl, rows = this.plan.rows;
    gl.useProgram(st.program);
    st.samplers.forEach(([loc, tex], unit) => {
      gl.activeTexture(gl.TEXTURE0 + unit);
      gl.bindTexture(gl.TEXTURE_2D, this.textures[tex]);
      gl.uniform1i(loc, unit);
    });
    st.output.forEach((tex, part) => {  // one draw per part of the output, lathe_row0 its first texel row
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(tex));
      gl.viewport(0, 0, st.width, Math.min(rows, st.rows - part * rows));  // the output's corner of a pooled texture
      if (st.row0 !== null) gl.uniform1i(st.row0, part * rows);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    });
  }

  // milliseconds per step (median of `repeat`): each kernel drawn alone and waited for by reading one texel
  // of its output, after the kernels before it (so it reads what they wrote, as in a real run)
  profile(repeat = 5) {
    const gl = this.gl, times = this.steps.map(() => []), px = new Float32Array(4);
    this.run();
    for (let r = 0; r < repeat; r++) {
      for (const [k, st] of this.steps.entries()) {
        const t0 = performance.now();
        this.draw(st);
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.FLOAT, px);
        times[k].push(performance.now() - t0);
      }
    }
    return times.map(t => t.sort((a, b) => a - b)[t.length >> 1]);
  }

  // the value's first `count` elements as a Float32Array (RGBA/FLOAT: the read format WebGL2 always accepts)
  read(name, count = undefined) {
    const gl = this.gl, v = this.plan.values[name];
    if (!v) throw new LatheError(`lathe: no value ${name}`);
    const n = count ?? v.size, texels = Math.ceil(n / 4);
    const rows = Math.ceil(texels / v.width), width = rows > 1 ? v.width : texels;
    const rgba = new Float32Array(width * rows * 4);
    for (let part = 0; part * this.plan.rows < rows; part++) {  // rows in order across the parts
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(v.textures[part]));
      gl.readPixels(0, 0, width, Math.min(this.plan.rows, rows - part * this.plan.rows), gl.RGBA, gl.FLOAT, rgba,
                    part * this.plan.rows * width * 4);
    }
    return rgba.slice(0, n);  // a copy: callers send its whole .buffer
  }

  outputs() { return this.plan.outputs.map(o => this.read(o.name)); }

  // milliseconds per run; each run ends by reading one texel of the first output, so the GPU has finished
  time(repeat = 50, warmup = 5) {
    const out = this.plan.outputs[0].name, times = [];
    for (let i = 0; i < warmup + repeat; i++) {
      const t0 = performance.now();
      this.run();
      this.read(out, 1);
      if (i >= warmup) times.push(performance.now() - t0);
    }
    return timing(times);
  }
}

// Fetch an artifact directory (as written by `mod.save(dir)` or `lathe export-web`) and compile it.
export async function loadModel(gl, url) {
  const [plan, params, programs] = await fetchArtifact(url, ['graph.json', 'params.bin', 'kernels.json']);
  return Model.create(gl, await plan.json(), await params.arrayBuffer(), await programs.json());
}
