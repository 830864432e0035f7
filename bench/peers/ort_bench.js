#!/usr/bin/env node
// ONNX Runtime (onnxruntime-node, CPU execution provider, FP32) peer baseline.
//
//   node bench/peers/ort_bench.js MODEL.onnx [options]
//     --batch 64[,B...]      batch sizes            --threads 1[,T...]   intraOpNumThreads
//     --seconds 3            time box per case      --warmup 3           untimed runs per case
//     --rounds 3             the time box is split into rounds; the best round's median is reported
//     --check-images N       images for the accuracy check (CIFAR default 1000, ImageNet 50)
//     --name NAME            model name printed (default: file name without .onnx)
//     --data DIR             data dir (default $TERN_DATA, else ../shared/data beside the repo)
//
// Session: intraOpNumThreads=T, interOpNumThreads=1, executionMode sequential, all graph
// optimisations (ORT's default). The model kind comes from its input shape:
//   [N,3,32,32]   CIFAR: records of cifar10/test_batch.bin, strided (the file is grouped by class),
//                 normalised (p/255 - mean)/std with the README's ImageNet mean/std.
//   [N,3,224,224] Tiny Darknet: imagenet_sample/ JPEGs (decoded by jpeg-js, not libjpeg-turbo, so
//                 pixels differ slightly from the README's), darknet resize + centre crop, p/255.
//   [N,3,227,227] SqueezeNet v1.1: imagenet_val/ JPEGs, Caffe preprocessing (B,G,R minus the mean).
// Before timing, the whole check set is run with the case's batch size and top-1 (and top-5 for
// ImageNet) accuracy is printed: the numbers must be near the README's FP32 accuracy.
// One line per case on stdout:
//   peer=ort-fp32 model=resnet20 batch=64 threads=1 images_per_s=.. ms_per_batch=.. acc=.. n=..
// ms_per_batch is the median of the timed runs in the best round; images_per_s = batch / ms_per_batch;
// ms_worst_round (median of the slowest round), ms_mean (all runs) and iters follow; other_cpu =
// cores used by other processes while the case was timed (> ~0.2: the number is disturbed).
'use strict';
const fs = require('fs');
const path = require('path');

function log(...a) { console.error(...a); }

let ort;
try { ort = require('onnxruntime-node'); } catch (e) {
  console.log('skip: onnxruntime-node not installed (bash bench/peers/install.sh npm)');
  process.exit(0);
}

function parseArgs(argv) {
  const o = { batch: '64', threads: '1', seconds: 3, warmup: 3, 'check-images': null, name: null,
    data: null, model: null, 'min-iters': 5, rounds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').filter((l) => l.startsWith('//'))
        .map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    }
    if (a.startsWith('--')) {
      const k = a.slice(2);
      if (!(k in o) || i + 1 >= argv.length) { console.error(`ort_bench.js: bad option ${a}`); process.exit(2); }
      o[k] = argv[++i];
    } else o.model = a;
  }
  if (!o.model) { console.error('usage: ort_bench.js MODEL.onnx [options] (see --help)'); process.exit(2); }
  o.batch = String(o.batch).split(',').map(Number);
  o.threads = String(o.threads).split(',').map(Number);
  o.seconds = Number(o.seconds); o.warmup = Number(o.warmup); o['min-iters'] = Number(o['min-iters']);
  o.rounds = Math.max(1, Number(o.rounds));
  if (!o.name) o.name = path.basename(o.model).replace(/\.onnx$/, '');
  if (!o.data) o.data = process.env.TERN_DATA || path.join(__dirname, '..', '..', '..', 'shared', 'data');
  return o;
}

// ---------------------------------------------------------------------------------------- data
const MEAN = [0.485, 0.456, 0.406], STD = [0.229, 0.224, 0.225];

function cifarRecords(file, idx) {
  const raw = fs.readFileSync(file);
  const n = idx.length, x = new Float32Array(n * 3072), y = new Int32Array(n);
  idx.forEach((r, k) => {
    const off = r * 3073;
    y[k] = raw[off];
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < 1024; p++)
        x[k * 3072 + c * 1024 + p] = (raw[off + 1 + c * 1024 + p] / 255 - MEAN[c]) / STD[c];
  });
  return { x, y, chw: 3072 };
}

// darknet resize_image(): bilinear, corners aligned, x then y, in float32 (README section 3).
function darknetResize(im, c, ih, iw, h2, w2) {
  const f = Math.fround;
  const part = new Float32Array(c * ih * w2), out = new Float32Array(c * h2 * w2);
  const wsc = f(f(iw - 1) / f(w2 - 1)), hsc = f(f(ih - 1) / f(h2 - 1));
  for (let k = 0; k < c; k++)
    for (let r = 0; r < ih; r++)
      for (let col = 0; col < w2; col++) {
        let v;
        if (col === w2 - 1 || iw === 1) v = im[(k * ih + r) * iw + iw - 1];
        else {
          const sx = f(col * wsc), ix = Math.trunc(sx), dx = f(sx - ix);
          v = f(f(f(1 - dx) * im[(k * ih + r) * iw + ix]) + f(dx * im[(k * ih + r) * iw + ix + 1]));
        }
        part[(k * ih + r) * w2 + col] = v;
      }
  for (let k = 0; k < c; k++)
    for (let r = 0; r < h2; r++) {
      const sy = f(r * hsc), iy = Math.trunc(sy), dy = f(sy - iy);
      for (let col = 0; col < w2; col++) {
        let v = f(f(1 - dy) * part[(k * ih + iy) * w2 + col]);
        if (!(r === h2 - 1 || ih === 1)) v = f(v + f(dy * part[(k * ih + iy + 1) * w2 + col]));
        out[(k * h2 + r) * w2 + col] = v;
      }
    }
  return out;
}

function imagenetImages(data, idx) {
  const jpeg = require('jpeg-js');
  const folder = path.join(data, 'imagenet_sample');
  const files = fs.readdirSync(folder).filter((f) => f.endsWith('.JPEG')).sort();
  const order = fs.readFileSync(path.join(data, 'models', 'imagenet', 'labels_darknet_order.txt'), 'utf8')
    .split('\n').filter(Boolean);
  const lab = new Map(order.map((w, i) => [w, i]));
  const chw = 3 * 224 * 224, x = new Float32Array(idx.length * chw), y = new Int32Array(idx.length);
  idx.forEach((i, k) => {
    const f = files[i % files.length];
    const img = jpeg.decode(fs.readFileSync(path.join(folder, f)), { useTArray: true, formatAsRGBA: false,
      maxMemoryUsageInMB: 1024 });
    const w = img.width, h = img.height;
    let im = new Float32Array(3 * h * w);
    for (let p = 0; p < h * w; p++) for (let c = 0; c < 3; c++) im[c * h * w + p] = img.data[p * 3 + c] / 255;
    let w2, h2;
    if (w < h) { w2 = 224; h2 = Math.floor(h * 224 / w); } else { w2 = Math.floor(w * 224 / h); h2 = 224; }
    if (w2 !== w || h2 !== h) im = darknetResize(im, 3, h, w, h2, w2);
    const y0 = Math.floor((h2 - 224) / 2), x0 = Math.floor((w2 - 224) / 2);
    for (let c = 0; c < 3; c++)
      for (let r = 0; r < 224; r++)
        x.set(im.subarray((c * h2 + y0 + r) * w2 + x0, (c * h2 + y0 + r) * w2 + x0 + 224), k * chw + (c * 224 + r) * 224);
    y[k] = lab.get(f.slice(0, 9));
  });
  return { x, y, chw };
}

// SqueezeNet v1.1 (README section 5): imagenet_val/ JPEGs (already 227x227; others: shorter side
// resized to 227 bilinearly, centre crop), Caffe preprocessing: channels B,G,R, mean (104, 117, 123)
// subtracted on the 0..255 scale; labels in labels_caffe_order.txt order.
function caffeImages(data, idx) {
  const jpeg = require('jpeg-js');
  const folder = path.join(data, 'imagenet_val');
  const files = fs.readdirSync(folder).filter((f) => f.endsWith('.JPEG')).sort();
  const order = fs.readFileSync(path.join(data, 'models', 'imagenet', 'labels_caffe_order.txt'), 'utf8')
    .split('\n').filter(Boolean);
  const lab = new Map(order.map((w, i) => [w, i]));
  const S = 227, chw = 3 * S * S, x = new Float32Array(idx.length * chw), y = new Int32Array(idx.length);
  const mean = [104, 117, 123];   // B, G, R
  idx.forEach((i, k) => {
    const f = files[i % files.length];
    const img = jpeg.decode(fs.readFileSync(path.join(folder, f)), { useTArray: true, formatAsRGBA: false,
      maxMemoryUsageInMB: 1024 });
    const w = img.width, h = img.height;
    let im = new Float32Array(3 * h * w);
    for (let p = 0; p < h * w; p++) for (let c = 0; c < 3; c++) im[c * h * w + p] = img.data[p * 3 + (2 - c)];  // B,G,R
    let w2 = w, h2 = h;
    if (w !== S || h !== S) {
      if (w < h) { w2 = S; h2 = Math.floor(h * S / w); } else { w2 = Math.floor(w * S / h); h2 = S; }
      im = darknetResize(im, 3, h, w, h2, w2);
    }
    const y0 = Math.floor((h2 - S) / 2), x0 = Math.floor((w2 - S) / 2);
    for (let c = 0; c < 3; c++)
      for (let r = 0; r < S; r++)
        for (let q = 0; q < S; q++) x[k * chw + (c * S + r) * S + q] = im[(c * h2 + y0 + r) * w2 + x0 + q] - mean[c];
    y[k] = lab.get(f.slice(0, 9));
  });
  return { x, y, chw };
}

// ----------------------------------------------------------------------------------- benchmark
function makeBatch(ds, start, b, dims) {
  const n = Math.min(b, ds.y.length - start);
  return { t: new ort.Tensor('float32', ds.x.slice(start * ds.chw, (start + n) * ds.chw), [n, ...dims]),
    y: ds.y.subarray(start, start + n) };
}

function timingBatches(ds, b, dims) {
  const n = ds.y.length, out = [];
  if (n < b) {  // tile a small pool into one full batch
    const x = new Float32Array(b * ds.chw);
    for (let i = 0; i < b; i++) x.set(ds.x.subarray((i % n) * ds.chw, (i % n + 1) * ds.chw), i * ds.chw);
    return [new ort.Tensor('float32', x, [b, ...dims])];
  }
  for (let s = 0; s + b <= n; s += b) out.push(makeBatch(ds, s, b, dims).t);
  return out;
}

async function accuracy(sess, ds, b, dims, inName, outName) {
  let c1 = 0, c5 = 0;
  for (let s = 0; s < ds.y.length; s += b) {
    const { t, y } = makeBatch(ds, s, b, dims);
    const out = (await sess.run({ [inName]: t }))[outName];
    const k = out.dims[1], d = out.data;
    for (let i = 0; i < y.length; i++) {
      const row = d.subarray(i * k, (i + 1) * k);
      let best = 0, above = 0;
      for (let j = 0; j < k; j++) {
        if (!Number.isFinite(row[j])) throw new Error('non-finite output');
        if (row[j] > row[best]) best = j;
      }
      for (let j = 0; j < k; j++) if (row[j] > row[y[i]]) above++;
      if (best === y[i]) c1++;
      if (above < 5) c5++;
    }
  }
  return [c1 / ds.y.length, c5 / ds.y.length];
}

// (busy CPU-seconds of the whole machine, CPU-seconds of this process, wall seconds)
function cpuSnapshot() {
  let busy = NaN;
  try {
    const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100;  // USER_HZ is 100 on Linux
  } catch (e) { /* not Linux */ }
  const u = process.cpuUsage();
  return [busy, (u.user + u.system) / 1e6, Number(process.hrtime.bigint()) / 1e9];
}
// Cores used by other processes between two snapshots: > 0.2 means the timing was disturbed.
function otherCpu(a, b) { const wall = b[2] - a[2]; return Math.max(0, ((b[0] - a[0]) - (b[1] - a[1])) / wall); }

// Median of each of `rounds` time boxes of seconds/rounds; the best round is reported (the machines
// are shared: a job that takes a core for a second spoils one round, not the number).
async function timeSession(sess, xs, inName, warmup, seconds, minIters, rounds) {
  for (let i = 0; i < warmup; i++) await sess.run({ [inName]: xs[i % xs.length] });
  const meds = [], all = [];
  let i = 0;
  for (let r = 0; r < rounds; r++) {
    const times = [], tEnd = process.hrtime.bigint() + BigInt(Math.round(seconds / rounds * 1e9));
    while (process.hrtime.bigint() < tEnd || times.length < Math.max(1, Math.floor(minIters / rounds))) {
      const t0 = process.hrtime.bigint();
      await sess.run({ [inName]: xs[i++ % xs.length] });
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    meds.push(times[times.length >> 1]);
    all.push(...times);
  }
  const mean = all.reduce((a, b) => a + b, 0) / all.length;
  return { med: Math.min(...meds), worst: Math.max(...meds), mean, iters: all.length };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.model)) { console.log(`skip: model ${o.model} not found`); return 0; }
  const opts = (t) => ({ intraOpNumThreads: t, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all' });
  let sess = await ort.InferenceSession.create(o.model, opts(o.threads[0]));
  const inName = sess.inputNames[0], outName = sess.outputNames[0];
  const t0 = Date.now();
  let ds, dims, imagenet;
  // The input shape decides the data set (the metadata API differs across ORT versions, so probe).
  const probe = async (d) => { try { await sess.run({ [inName]: new ort.Tensor('float32', new Float32Array(d.reduce((a, b) => a * b)), d) }); return true; } catch (e) { return false; } };
  if (await probe([1, 3, 32, 32])) {
    imagenet = false; dims = [3, 32, 32];
    const n = Number(o['check-images'] || 1000), stride = Math.max(1, Math.floor(10000 / n));
    ds = cifarRecords(path.join(o.data, 'cifar10', 'test_batch.bin'), Array.from({ length: n }, (_, i) => (i * stride) % 10000));
  } else if (await probe([1, 3, 224, 224])) {
    imagenet = true; dims = [3, 224, 224];
    const n = Number(o['check-images'] || 50);
    ds = imagenetImages(o.data, Array.from({ length: n }, (_, i) => Math.floor(i * 1000 / n)));
  } else if (await probe([1, 3, 227, 227])) {
    imagenet = true; dims = [3, 227, 227];
    const n = Number(o['check-images'] || 50);
    ds = caffeImages(o.data, Array.from({ length: n }, (_, i) => Math.floor(i * 650 / n)));
  } else { console.log(`skip: ${o.name}: input is none of [N,3,32,32], [N,3,224,224], [N,3,227,227]`); return 0; }
  log(`ort_bench: ${o.name}: ${imagenet ? 'imagenet' : 'cifar'}, ${ds.y.length} check images, data ${((Date.now() - t0) / 1e3).toFixed(1)}s, onnxruntime-node ${require('onnxruntime-node/package.json').version}`);

  let fails = 0;
  const accs = new Map();
  for (const t of o.threads) {
    if (t !== o.threads[0]) { if (sess.release) await sess.release(); sess = await ort.InferenceSession.create(o.model, opts(t)); }
    for (const b of o.batch) {
      if (!accs.has(b)) {
        const a = await accuracy(sess, ds, b, dims, inName, outName);
        accs.set(b, a);
        const floor = imagenet ? 0.55 : 0.75;
        if (ds.y.length >= 50 && a[0] < floor) {  // fixed images: deterministic
          console.log(`FAIL: ort-fp32 ${o.name} top-1 ${a[0].toFixed(4)} on ${ds.y.length} images is below ${floor}`);
          fails++;
        }
      }
      const [a1, a5] = accs.get(b);
      const snap = cpuSnapshot();
      const r = await timeSession(sess, timingBatches(ds, b, dims), inName, o.warmup, o.seconds, o['min-iters'], o.rounds);
      console.log(`peer=ort-fp32 model=${o.name} batch=${b} threads=${t} images_per_s=${(b * 1e3 / r.med).toFixed(1)} ` +
        `ms_per_batch=${r.med.toFixed(3)} acc=${a1.toFixed(4)}${imagenet ? ` top5=${a5.toFixed(4)}` : ''} n=${ds.y.length} ` +
        `ms_worst_round=${r.worst.toFixed(3)} ms_mean=${r.mean.toFixed(3)} iters=${r.iters} ` +
        `other_cpu=${otherCpu(snap, cpuSnapshot()).toFixed(2)}`);
    }
  }
  return fails ? 1 : 0;
}
main().then((rc) => process.exit(rc)).catch((e) => { console.error(e); process.exit(1); });
