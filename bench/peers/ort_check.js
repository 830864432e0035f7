#!/usr/bin/env node
// Cross-checks models written by scripts/export_torchvision.py with ONNX Runtime (FP32, CPU):
// runs NAME.onnx on NAME.input.bin and compares with PyTorch's NAME.output.bin, using the
// tolerance in NAME.json (max|ort - torch| <= rel * max|torch|). This shows that the exports are
// valid ONNX and that the tolerance tern's C test uses is met by an independent executor.
//   node bench/peers/ort_check.js OUTDIR [name ...]     (default: every *.json in OUTDIR)
'use strict';
const fs = require('fs');
const path = require('path');
let ort;
try { ort = require('onnxruntime-node'); } catch (e) {
  console.log('skip: onnxruntime-node not installed (bash bench/peers/install.sh npm)');
  process.exit(0);
}

function readF32(file) {
  const b = fs.readFileSync(file);
  const out = new Float32Array(b.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}

async function main() {
  const dir = process.argv[2];
  if (!dir) { console.error('usage: ort_check.js OUTDIR [name ...]'); process.exit(2); }
  let names = process.argv.slice(3);
  if (names.length === 0)
    names = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  let pass = 0, fail = 0;
  for (const name of names) {
    const side = JSON.parse(fs.readFileSync(path.join(dir, name + '.json'), 'utf8'));
    const t0 = process.hrtime.bigint();
    const sess = await ort.InferenceSession.create(path.join(dir, side.model),
      { intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential' });
    const x = readF32(path.join(dir, side.input.file));
    const ref = readF32(path.join(dir, side.output.file));
    const r = await sess.run({ [side.input.name]: new ort.Tensor('float32', x, side.input.shape) });
    const y = r[side.output.name];
    let maxd = 0, maxr = 0, same = true;
    if (y.data.length !== ref.length || y.dims.join(',') !== side.output.shape.join(',')) same = false;
    for (let i = 0; same && i < ref.length; i++) {
      maxd = Math.max(maxd, Math.abs(y.data[i] - ref[i]));
      maxr = Math.max(maxr, Math.abs(ref[i]));
    }
    const rel = maxr > 0 ? maxd / maxr : maxd;
    const ok = same && Number.isFinite(rel) && rel <= side.tolerance.rel_to_absmax;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`${ok ? 'ok' : 'FAIL'} ort-check ${name} opset=${side.opset} dims=[${y.dims}] ` +
      `max_abs_diff=${maxd.toExponential(2)} rel=${rel.toExponential(2)} ` +
      `tol=${side.tolerance.rel_to_absmax} ms=${ms.toFixed(0)}`);
    if (ok) pass++; else fail++;
    if (sess.release) await sess.release();
  }
  console.log(`${pass} passed, ${fail} failed`);
  process.exit(fail ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(1); });
