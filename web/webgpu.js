// lathe's WebGPU runtime: runs a lathe `webgpu` artifact (graph.json, params.bin, kernels.wgsl, as
// WebGPUGraphModule.save writes them). Mirrors lathe/runtime/webgpu.py: one storage buffer per memory-plan
// slot and per parameter (uploaded once), one compute pipeline per kernel, every dispatch of a run in one
// compute pass of one command encoder. Tensors of int64, 8-bit and bool types are stored as i32.
// Plain ES module, no dependencies.
import {LatheError, fetchArtifact, timing} from './lathe.js';

const SEPARATOR = '// ---- kernel ';  // kernels.wgsl: the kernels one after another, each after this line
const LIMITS = ['maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ', 'maxStorageBufferBindingSize',
  'maxBufferSize'];

// A GPUDevice with the adapter's own limits on what kernels use, or a LatheError saying what the browser lacks.
export async function createDevice() {
  if (!navigator.gpu) throw new LatheError('lathe: this browser has no WebGPU (navigator.gpu is missing: it needs a ' +
    'secure context, https or localhost, and a browser that ships it; headless Chromium needs --enable-unsafe-webgpu)');
  const adapter = await navigator.gpu.requestAdapter({powerPreference: 'high-performance'});
  if (!adapter) throw new LatheError('lathe: WebGPU found no adapter (no usable GPU, or WebGPU is disabled here)');
  const requiredLimits = Object.fromEntries(LIMITS.map(k => [k, adapter.limits[k]]));
  const device = await adapter.requestDevice({requiredLimits});
  const info = adapter.info ?? {};
  device.latheAdapter = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ');
  return device;
}

export function splitKernels(text) {  // kernels.wgsl -> {kernel name: its WGSL module}
  const out = {};
  for (const part of text.split(SEPARATOR).slice(1)) {
    const nl = part.indexOf('\n');
    out[part.slice(0, nl)] = part.slice(nl + 1);
  }
  return out;
}

const count = (shape) => shape.reduce((a, b) => a * b, 1);
const storageBytes = (shape) => Math.max(4, 4 * count(shape));  // every element takes 4 bytes (f32 or i32)

// A parameter from params.bin (its own little-endian type) as the shader reads it: Float32Array or Int32Array.
function storedParam(blob, p) {
  const n = count(p.shape), at = p.offset;
  switch (p.dtype) {
    case 'float32': return new Float32Array(blob, at, n);
    case 'int32': return new Int32Array(blob, at, n);
    case 'int64': return Int32Array.from(new BigInt64Array(blob, at, n), Number);
    case 'int8': return Int32Array.from(new Int8Array(blob, at, n));
    case 'uint8': case 'bool': return Int32Array.from(new Uint8Array(blob, at, n));
    default: throw new LatheError(`lathe: parameter of type ${p.dtype} has no WebGPU storage`);
  }
}

export class Model {
  // plan: graph.json; params: ArrayBuffer (params.bin); kernels: {name: WGSL} (splitKernels of kernels.wgsl)
  static async create(device, plan, params, kernels) {
    const m = new Model(device, plan);
    await m.compile(kernels);
    m.upload(params);
    m.bind();
    return m;
  }

  constructor(device, plan) {
    if (!plan.launch) throw new LatheError('lathe: graph.json has no WebGPU launches; is this a webgpu artifact?');
    this.device = device; this.plan = plan;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffer = (bytes) => device.createBuffer({size: Math.ceil(bytes / 4) * 4, usage});
    const values = plan.values, slotBytes = plan.slots.map(() => 4);
    for (const [name, slot] of Object.entries(plan.slot_of))
      slotBytes[slot] = Math.max(slotBytes[slot], storageBytes(values[name].shape));
    const slots = slotBytes.map(buffer);
    this.buffers = {};  // value name -> GPUBuffer; the values of a slot share it, each from offset 0
    for (const [name, slot] of Object.entries(plan.slot_of)) this.buffers[name] = slots[slot];
    for (const [name, p] of Object.entries(plan.params ?? {})) this.buffers[name] = buffer(storageBytes(p.shape));
    for (const io of [...plan.inputs, ...plan.outputs]) this.buffers[io.name] ??= buffer(storageBytes(io.shape));
    this.staging = new Map();  // output name -> MAP_READ buffer, made once
  }

  async compile(kernels) {
    const d = this.device, lim = d.limits;
    // start every compilation before waiting for any: the browser may compile them in parallel
    const pending = Object.entries(this.plan.launch).map(async ([name, launch]) => {
      const size = launch.local.reduce((a, b) => a * b, 1);
      if (size > lim.maxComputeInvocationsPerWorkgroup || launch.shared_bytes > lim.maxComputeWorkgroupStorageSize ||
          launch.bindings > lim.maxStorageBuffersPerShaderStage)
        throw new LatheError(`lathe: kernel ${name} needs ${size} invocations per workgroup, ${launch.shared_bytes} ` +
          `bytes of workgroup memory and ${launch.bindings} storage buffers; this device allows ` +
          `${lim.maxComputeInvocationsPerWorkgroup}, ${lim.maxComputeWorkgroupStorageSize} and ` +
          `${lim.maxStorageBuffersPerShaderStage}`);
      if (kernels[name] === undefined) throw new LatheError(`lathe: kernels.wgsl has no kernel ${name}`);
      const module = d.createShaderModule({code: kernels[name], label: name});
      // every binding declared, read-only unless written ('auto' layouts drop bindings a shader never reads)
      const layout = d.createBindGroupLayout({entries: Array.from({length: launch.bindings}, (_, k) => ({
        binding: k, visibility: GPUShaderStage.COMPUTE,
        buffer: {type: launch.written.includes(k) ? 'storage' : 'read-only-storage'}}))});
      try {
        const pipeline = await d.createComputePipelineAsync({label: name, compute: {module, entryPoint: name},
          layout: d.createPipelineLayout({bindGroupLayouts: [layout]})});
        return [name, {pipeline, layout, groups: launch.groups}];
      } catch (err) {
        const info = await module.getCompilationInfo();
        const why = info.messages.map(m => `${m.lineNum}:${m.linePos} ${m.type}: ${m.message}`).join('; ');
        throw new LatheError(`lathe: kernel ${name} does not compile: ${why || err.message}`);
      }
    });
    this.pipelines = Object.fromEntries(await Promise.all(pending));
  }

  upload(params) {
    for (const [name, p] of Object.entries(this.plan.params ?? {}))
      if (count(p.shape)) this.device.queue.writeBuffer(this.buffers[name], 0, storedParam(params, p));
  }

  bind() {  // one bind group per step, made once: a run only records dispatches
    const values = this.plan.values;
    this.steps = this.plan.steps.map(st => {
      const k = this.pipelines[st.kernel];
      const entries = st.args.map((a, i) => ({binding: i,
        resource: {buffer: this.buffers[a], size: storageBytes(values[a].shape)}}));
      return {pipeline: k.pipeline, groups: k.groups, group: this.device.createBindGroup({layout: k.layout, entries})};
    });
  }

  // data: the input in its stored form, Float32Array for float32 and Int32Array for the integer and bool types
  setInput(name, data) {
    const io = this.plan.inputs.find(i => i.name === name);
    if (!io) throw new LatheError(`lathe: ${name} is not an input`);
    if (data.length !== count(io.shape)) throw new LatheError(`lathe: input ${name} has ${data.length} elements, ` +
                                                               `the model takes ${count(io.shape)}`);
    if (data.length) this.device.queue.writeBuffer(this.buffers[name], 0, data);
  }

  encode(encoder) {
    const pass = encoder.beginComputePass();
    let last = null;
    for (const st of this.steps) {
      if (st.pipeline !== last) pass.setPipeline(last = st.pipeline);
      pass.setBindGroup(0, st.group);
      pass.dispatchWorkgroups(...st.groups);
    }
    pass.end();
  }

  run() {  // queued, not awaited: a read after it waits for it
    const encoder = this.device.createCommandEncoder();
    this.encode(encoder);
    this.device.queue.submit([encoder.finish()]);
  }

  stagingFor(name) {
    let s = this.staging.get(name);
    if (!s) {
      const v = this.plan.values[name] ?? this.plan.params?.[name];
      if (!v) throw new LatheError(`lathe: no value ${name}`);
      s = {buffer: this.device.createBuffer({size: storageBytes(v.shape), usage: GPUBufferUsage.MAP_READ |
        GPUBufferUsage.COPY_DST}), n: count(v.shape), int: v.dtype !== 'float32'};
      this.staging.set(name, s);
    }
    return s;
  }

  // the values' elements (Float32Array, or Int32Array for integer and bool types), after the work queued so far;
  // with runs, that many runs of the model and the copies go in one submission. Reads wait for each other: a staging
  // buffer cannot be mapped twice at once (a page may classify a new image before the last one is shown)
  read(names, runs = 0) {
    const result = (this.reading ?? Promise.resolve()).then(() => this.readNow(names, runs));
    this.reading = result.catch(() => {});
    return result;
  }

  async readNow(names, runs) {
    const encoder = this.device.createCommandEncoder(), out = names.map(n => this.stagingFor(n));
    for (let k = 0; k < runs; k++) this.encode(encoder);
    names.forEach((n, i) => encoder.copyBufferToBuffer(this.buffers[n], 0, out[i].buffer, 0, out[i].buffer.size));
    this.device.queue.submit([encoder.finish()]);
    await Promise.all(out.map(s => s.buffer.mapAsync(GPUMapMode.READ)));
    return out.map(s => {
      const bytes = s.buffer.getMappedRange().slice(0, 4 * s.n);
      s.buffer.unmap();
      return s.int ? new Int32Array(bytes) : new Float32Array(bytes);
    });
  }

  outputs() { return this.read(this.plan.outputs.map(o => o.name)); }

  destroy() {  // the GPU buffers freed now, not whenever the garbage collector gets to them
    for (const b of new Set(Object.values(this.buffers))) b.destroy();
    for (const s of this.staging.values()) s.buffer.destroy();
  }

  // milliseconds per run; each sample is one submission (`number` runs' dispatches and the outputs' copies)
  // and ends when the outputs are mapped on the CPU
  async time(repeat = 50, warmup = 5, number = 1) {
    const names = this.plan.outputs.map(o => o.name), times = [];
    for (let i = 0; i < warmup + repeat; i++) {
      const t0 = performance.now();
      await this.read(names, number);
      if (i >= warmup) times.push((performance.now() - t0) / number);
    }
    return timing(times);
  }

  // milliseconds per step (median of `repeat`): each kernel alone in its own submission and waited for, after
  // the kernels before it (so it reads what they wrote, as in a real run)
  async profile(repeat = 5) {
    const q = this.device.queue, times = this.steps.map(() => []);
    await q.onSubmittedWorkDone();  // a run queued before must not count as the first kernel's time
    for (let r = 0; r < repeat; r++) {
      for (const [k, st] of this.steps.entries()) {
        const t0 = performance.now(), encoder = this.device.createCommandEncoder(), pass = encoder.beginComputePass();
        pass.setPipeline(st.pipeline); pass.setBindGroup(0, st.group); pass.dispatchWorkgroups(...st.groups); pass.end();
        q.submit([encoder.finish()]);
        await q.onSubmittedWorkDone();
        times[k].push(performance.now() - t0);
      }
    }
    return times.map(t => t.sort((a, b) => a - b)[t.length >> 1]);
  }
}

// Fetch an artifact directory (as written by `mod.save(dir)` for target webgpu) and compile it.
export async function loadModel(device, url) {
  const [plan, params, kernels] = await fetchArtifact(url, ['graph.json', 'params.bin', 'kernels.wgsl']);
  return Model.create(device, await plan.json(), await params.arrayBuffer(), splitKernels(await kernels.text()));
}
