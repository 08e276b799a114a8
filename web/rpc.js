// The browser side of lathe.rpc: connects back to the Python server (token from this page's URL) and
// runs what it asks. Requests are JSON text frames; one flagged {binary: true} is followed by one binary
// frame (params blob, input data). Replies mirror that; nothing here evaluates what it receives.
// A load with kind 'webgpu' makes a WebGPU model (webgpu.js), 'wasm' a WebAssembly one (wasm.js), any
// other a WebGL2 one (lathe.js).
import {createContext, Model} from './lathe.js';
import {createDevice, Model as GPUModel, splitKernels} from './webgpu.js';
import {WasmModel} from './wasm.js';

const status = (text) => { document.getElementById('status').textContent = text; };

export function connect() {
  const token = new URLSearchParams(location.search).get('token') ?? '';
  const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
  ws.binaryType = 'arraybuffer';
  let gl = null, gpu = null;  // the WebGL2 context and the GPUDevice, each made when first needed
  const models = new Map();
  let nextModel = 1;
  const inbox = [], waiters = [];
  const take = () => inbox.length ? Promise.resolve(inbox.shift()) : new Promise(r => waiters.push(r));
  ws.onmessage = (e) => waiters.length ? waiters.shift()(e.data) : inbox.push(e.data);
  ws.onopen = () => { status('connected to lathe'); loop(); };
  ws.onclose = () => status('disconnected');

  const handlers = {
    info: async () => ({userAgent: navigator.userAgent, renderer: (() => {
      gl ??= createContext(); const d = gl.getExtension('WEBGL_debug_renderer_info');
      return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })(),
      webgpu: await (async () => { try { gpu ??= await createDevice(); return gpu.latheAdapter; }
                                   catch (err) { return `none: ${err.message}`; } })()}),
    load: async (m, blob) => {
      const id = nextModel++;
      if (m.kind === 'wasm') {
        const bytes = new Uint8Array(blob);
        models.set(id, await WasmModel.load(m.plan, bytes.subarray(0, m.params_bytes), bytes.subarray(m.params_bytes)));
      } else if (m.kind === 'webgpu') {
        gpu ??= await createDevice();
        models.set(id, await GPUModel.create(gpu, m.plan, blob, splitKernels(m.kernels)));
      } else {
        gl ??= createContext();
        models.set(id, await Model.create(gl, m.plan, blob, m.programs));
      }
      return {model: id};
    },
    set: (m, blob) => {
      model(m).setInput(m.name, m.raw ? new Uint8Array(blob) : m.int ? new Int32Array(blob) : new Float32Array(blob));
      return {};
    },
    run: (m) => { model(m).run(); return {}; },
    read: async (m) => {
      const x = model(m);
      return {binary: (x instanceof GPUModel ? (await x.read([m.name]))[0] : x.read(m.name)).buffer};
    },
    time: async (m) => await model(m).time(m.repeat, m.warmup, m.number ?? 1),  // webgl ignores number
    profile: async (m) => {
      const x = model(m);
      if (!x.profile) throw new Error('per-kernel profiles are for webgpu and webgl models');
      return {ms: await x.profile(m.repeat)};
    },
    free: (m) => { models.get(m.model)?.destroy?.(); models.delete(m.model); return {}; },
  };
  const model = (m) => { const x = models.get(m.model); if (!x) throw new Error(`no model ${m.model}`); return x; };

  async function loop() {
    for (;;) {
      const text = await take();
      let reply;
      let id = null;
      try {
        if (typeof text !== 'string') throw new Error('expected a JSON request, got a binary frame');
        const m = JSON.parse(text);
        id = m.id;
        const blob = m.binary ? await take() : null;
        if (m.binary && typeof blob === 'string') throw new Error('expected a binary frame after the request');
        const h = handlers[m.op];
        if (!h) throw new Error(`unknown op ${m.op}`);
        reply = await h(m, blob);
      } catch (err) {
        ws.send(JSON.stringify({id, ok: false, error: String(err.message ?? err)}));
        continue;
      }
      const {binary, ...rest} = reply;
      ws.send(JSON.stringify({id, ok: true, binary: !!binary, ...rest}));
      if (binary) ws.send(binary);
    }
  }
}
