// The exported page: preprocess an <img> like lathe.zoo.preprocess, run the model, show top-5 and the time.
// WebGPU (model/webgpu, WGSL compute shaders) when the browser has it, else WebGL2 (model/webgl), else the
// CPU: WebAssembly (model/wasm); ?backend=webgpu, webgl or wasm picks one.
import {createContext, loadModel as loadWebGL} from './lathe.js';
import {createDevice, loadModel as loadWebGPU} from './webgpu.js';
import {loadModel as loadWasm} from './wasm.js';

const $ = (id) => document.getElementById(id);
const SIZE = 224, RESIZE = 256;

function pixels(img) {  // shorter side to 256 (bilinear), centre crop 224, (x - 127) / 128, NCHW
  const scale = RESIZE / Math.min(img.naturalWidth, img.naturalHeight);
  const w = Math.max(RESIZE, Math.round(img.naturalWidth * scale)), h = Math.max(RESIZE, Math.round(img.naturalHeight * scale));
  const canvas = new OffscreenCanvas(SIZE, SIZE), ctx = canvas.getContext('2d');
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(img, -Math.floor((w - SIZE) / 2), -Math.floor((h - SIZE) / 2), w, h);
  const rgba = ctx.getImageData(0, 0, SIZE, SIZE).data, x = new Float32Array(3 * SIZE * SIZE);
  for (let i = 0; i < SIZE * SIZE; i++)
    for (let c = 0; c < 3; c++) x[c * SIZE * SIZE + i] = (rgba[4 * i + c] - 127) / 128;
  return x;
}

const BACKENDS = {  // in the order tried: name shown, loader
  webgpu: ['WebGPU', async () => loadWebGPU(await createDevice(), 'model/webgpu/')],
  webgl: ['WebGL2', async () => loadWebGL(createContext(), 'model/webgl/')],
  wasm: ['WebAssembly (CPU)', async () => loadWasm('model/wasm/')],
};

// {model, kind, name, why}: the first backend that loads, or the one ?backend= asks for; why says what was missing
async function load() {
  const wanted = new URLSearchParams(location.search).get('backend');
  if (wanted && !BACKENDS[wanted]) throw new Error(`?backend=${wanted}: choose ${Object.keys(BACKENDS).join(', ')}`);
  const missing = [];
  for (const kind of wanted ? [wanted] : Object.keys(BACKENDS)) {
    const [name, loader] = BACKENDS[kind];
    try {
      return {model: await loader(), kind, name, why: missing.length ? ` (${missing.join('; ')})` : ''};
    } catch (err) {
      if (wanted) throw err;
      missing.push(`no ${name}: ${err.message ?? err}`);
    }
  }
  throw new Error(missing.join('; '));
}

async function main() {
  const [{model, kind, name, why}, labels] = await Promise.all([load(), fetch('labels.json').then(r => r.json())]);
  document.body.dataset.backend = kind;
  $('backend').textContent = name + why;
  const input = model.plan.inputs[0].name;
  async function classify() {
    const img = $('image');
    await img.decode();
    const t0 = performance.now();
    model.setInput(input, pixels(img));
    model.run();
    const logits = (await model.outputs())[0];
    const ms = performance.now() - t0;
    const max = Math.max(...logits), exps = logits.map(v => Math.exp(v - max)), sum = exps.reduce((a, b) => a + b);
    const top = [...logits.keys()].sort((a, b) => logits[b] - logits[a]).slice(0, 5);
    $('top5').innerHTML = top.map(k => `<tr><td class="label">${labels[k]}</td><td>${(100 * exps[k] / sum).toFixed(1)}%</td></tr>`).join('');
    $('status').textContent = `classified in ${ms.toFixed(1)} ms (${name}; upload and read-back included, and on the ` +
                              'first image the kernels\' compilation)';
    document.body.dataset.done = '1';
  }
  $('file').onchange = () => { const f = $('file').files[0]; if (f) { $('image').src = URL.createObjectURL(f); classify(); } };
  await classify();
}
main().catch(err => { $('error').textContent = String(err.message ?? err); document.body.dataset.done = 'error'; });
