// The peers of bench/web.py, in the same Chromium session as lathe: TensorFlow.js's WebGL backend running
// the network rebuilt from tf.js layers with the ONNX model's weights, and onnxruntime-web's WebGL and WebGPU
// providers (ort.all bundles both).
/* global tf, ort */

const stats = (times) => {
  const s = [...times].sort((a, b) => a - b), m = s.length >> 1;
  return {median_ms: s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2,
          mean_ms: times.reduce((a, b) => a + b, 0) / times.length, times_ms: times};
};
const fetchFloats = async (url) => new Float32Array(await (await fetch(url)).arrayBuffer());

// spec: {input: [N, H, W, C], layers: [{kind, name, inputs, config, weights: [[offset, shape]...]}], output}
async function buildTfjs(spec, blob) {
  const values = {[spec.input_name]: tf.input({shape: spec.input.slice(1)})};
  for (const l of spec.layers) {
    const layer = tf.layers[l.kind]({...l.config, name: l.name});
    const ins = l.inputs.map(n => values[n]);
    values[l.output] = layer.apply(ins.length === 1 ? ins[0] : ins);
    if (l.weights.length) layer.setWeights(l.weights.map(([off, shape]) =>
      tf.tensor(blob.subarray(off / 4, off / 4 + shape.reduce((a, b) => a * b, 1)), shape)));
  }
  return tf.model({inputs: values[spec.input_name], outputs: values[spec.output]});
}

window.benchTfjs = async (dir, runs, warmup) => {
  await tf.setBackend('webgl');
  await tf.ready();
  const spec = await (await fetch(dir + 'tfjs.json')).json();
  const model = await buildTfjs(spec, await fetchFloats(dir + 'tfjs.bin'));
  const x = tf.tensor(await fetchFloats(dir + 'input_nhwc.bin'), spec.input);
  const times = [];
  let out = null;
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const y = model.predict(x);
    out = await y.data();
    y.dispose();
    if (i >= warmup) times.push(performance.now() - t0);
  }
  return {...stats(times), backend: tf.getBackend(), output: Array.from(out)};
};

// ep: 'webgl' or 'webgpu'; outputs come back to the CPU in every run (the default output location)
window.benchOrt = async (dir, runs, warmup, ep) => {
  const session = await ort.InferenceSession.create(dir + 'model.onnx', {executionProviders: [ep]});
  const x = new ort.Tensor('float32', await fetchFloats(dir + 'input_nchw.bin'), [1, 3, 224, 224]);
  const feeds = {[session.inputNames[0]]: x};
  const times = [];
  let out = null;
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const r = await session.run(feeds);
    out = r[session.outputNames[0]].data;
    if (i >= warmup) times.push(performance.now() - t0);
  }
  return {...stats(times), backend: ep, output: Array.from(out)};
};
