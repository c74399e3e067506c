// Glass-to-glass latency by the clock in the picture: plays an HLS URL with
// hls.js (lowLatencyMode) in headless Chromium and, for every frame the
// video element presents (requestVideoFrameCallback), draws the clock band of
// benches/g2g/clock_sender.py to a canvas, decodes it (benches/g2g/band.cjs)
// and takes Date.now() minus the time in the picture: the sender and this
// browser run on one machine, so on one clock. Prints one JSON report on
// stdout. Driven by benches/glass_to_glass.sh.
//
// usage: node g2g.mjs URL SECONDS --geometry JSON [--hls-config JSON]
//                     [--start-timeout S]
//
// SECONDS of measurement start at the first 'playing' (waiting for it at
// most --start-timeout, default 30 s). --geometry: the band geometry,
// `clock_sender.py --geometry --size WxH`. --hls-config: a JSON object merged
// over { lowLatencyMode: true, debug: false }.
//
// The report: `samples` ([ms since measuring began, latency ms, frame
// number] per decoded frame), `decodeFailures` (by reason: 'contrast' no
// band, 'ambiguous', 'crc'), `presentedGaps` (frames the compositor presented
// without a callback), `sequenceGaps` (frame numbers never presented:
// dropped by the decoder or skipped by the player), `stalls` ('waiting' after
// the first 'playing', not seeking) with `stalledMs`, `bufferStalledError`,
// `bufferSeekOverHole`, the other hls.js errors by name, `hlsLatency`
// (hls.js's own figure every 250 ms), the element's decoded/dropped frames,
// and `events`.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secondsArg, ...rest] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 60);
const opt = name => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
const geometry = JSON.parse(opt('--geometry') ?? 'null');
const hlsConfig = JSON.parse(opt('--hls-config') ?? '{}');
const startTimeout = Number(opt('--start-timeout') ?? 30);
if (!url || !(seconds > 0) || !geometry || typeof geometry.block !== 'number') {
  console.error('usage: node g2g.mjs URL SECONDS --geometry JSON [--hls-config JSON] [--start-timeout S]');
  process.exit(2);
}
if (hlsConfig === null || typeof hlsConfig !== 'object' || Array.isArray(hlsConfig)) {
  throw new Error('--hls-config needs a JSON object');
}
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const hlsPath = require.resolve('hls.js/dist/hls.min.js');
const bandPath = join(here, '..', '..', 'benches', 'g2g', 'band.cjs');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const userDataDir = mkdtempSync(join(tmpdir(), 'ferrocast-g2g-chromium-'));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ],
});
let report;
try {
  const page = await context.newPage();
  await page.setContent('<!doctype html><video id="v" muted autoplay playsinline width="640"></video>');
  await page.addScriptTag({ path: hlsPath });
  await page.addScriptTag({ path: bandPath });
  report = await page.evaluate(async ({ url, seconds, geometry: g, hlsConfig, startTimeout }) => {
    const video = document.getElementById('v');
    const r = {
      supported: Hls.isSupported(), rvfc: 'requestVideoFrameCallback' in HTMLVideoElement.prototype,
      playing: false, firstPlayingMs: null, measuredMs: 0, fatal: [], errors: {},
      stalls: 0, stalledMs: 0, bufferStalledError: 0, bufferSeekOverHole: 0,
      frames: 0, decoded: 0, decodeFailures: {}, presentedGaps: 0, sequenceGaps: 0, repeats: 0,
      decodeCostMs: { max: 0, total: 0 }, samples: [], hlsLatency: [], events: [],
    };
    const t0 = performance.now();
    const now = () => Math.round(performance.now() - t0);
    const event = what => r.events.push({ t: now(), what });
    let measureFrom = null; // performance.now() when measuring began
    const measuring = () => measureFrom !== null && performance.now() - measureFrom < seconds * 1000;

    const hls = new Hls({ lowLatencyMode: true, debug: false, ...hlsConfig });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (d.fatal) r.fatal.push(`${d.type}:${d.details}`);
      event(`error ${d.type}:${d.details}${d.fatal ? ' (fatal)' : ''}`);
      if (!r.playing) return;
      r.errors[d.details] = (r.errors[d.details] ?? 0) + 1;
      if (d.details === 'bufferStalledError') r.bufferStalledError++;
      if (d.details === 'bufferSeekOverHole') r.bufferSeekOverHole++;
    });
    let stalledAt = null;
    video.addEventListener('playing', () => {
      if (!r.playing) {
        r.playing = true;
        r.firstPlayingMs = now();
        measureFrom = performance.now();
        event('playing');
      }
      if (stalledAt !== null) {
        r.stalledMs += performance.now() - stalledAt;
        event(`playing again after ${Math.round(performance.now() - stalledAt)} ms`);
        stalledAt = null;
      }
    });
    video.addEventListener('waiting', () => {
      event(`waiting at ${video.currentTime.toFixed(3)}${video.seeking ? ' (seeking)' : ''}`);
      if (r.playing && !video.seeking && measuring()) {
        r.stalls++;
        if (stalledAt === null) stalledAt = performance.now();
      }
    });

    // The band, cropped from each presented frame at the sender's pixel scale.
    const cw = g.cols * g.block;
    const ch = g.rows * g.block;
    const canvas = document.createElement('canvas');
    canvas.width = cw;
    canvas.height = ch;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    let lastPresented = null;
    let lastSeq = null;
    const onFrame = (_now, meta) => {
      const wall = Date.now();
      if (measuring()) {
        const t = Math.round(performance.now() - measureFrom);
        r.frames++;
        if (lastPresented !== null && meta.presentedFrames > lastPresented + 1) {
          r.presentedGaps += meta.presentedFrames - lastPresented - 1;
        }
        const c0 = performance.now();
        const sx = video.videoWidth / g.width;
        const sy = video.videoHeight / g.height;
        ctx.drawImage(video, g.x0 * sx, g.y0 * sy, cw * sx, ch * sy, 0, 0, cw, ch);
        const d = G2GBand.decodeBand(ctx.getImageData(0, 0, cw, ch).data, cw, 4, g);
        const cost = performance.now() - c0;
        r.decodeCostMs.total += cost;
        r.decodeCostMs.max = Math.max(r.decodeCostMs.max, cost);
        if (d.ok) {
          r.decoded++;
          r.samples.push([t, wall - d.ms, d.seq]);
          if (lastSeq !== null) {
            const step = (d.seq - lastSeq + 65536) % 65536;
            if (step === 0) r.repeats++;
            else if (step > 1 && step < 32768) r.sequenceGaps += step - 1;
          }
          lastSeq = d.seq;
        } else {
          r.decodeFailures[d.reason] = (r.decodeFailures[d.reason] ?? 0) + 1;
        }
      }
      lastPresented = meta.presentedFrames;
      video.requestVideoFrameCallback(onFrame);
    };
    if (r.rvfc) video.requestVideoFrameCallback(onFrame);

    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
    while (true) {
      await new Promise(res => setTimeout(res, 250));
      const elapsed = performance.now() - t0;
      if (measureFrom === null) {
        if (elapsed > startTimeout * 1000 || r.fatal.length) break;
        continue;
      }
      if (!measuring()) break;
      if (r.playing && hls.latency) r.hlsLatency.push(Math.round(hls.latency * 1000));
    }
    if (stalledAt !== null) r.stalledMs += performance.now() - stalledAt;
    r.stalledMs = Math.round(r.stalledMs);
    r.measuredMs = measureFrom === null ? 0 : Math.round(Math.min(performance.now() - measureFrom, seconds * 1000));
    r.decodeCostMs.mean = r.frames ? +(r.decodeCostMs.total / r.frames).toFixed(3) : null;
    r.decodeCostMs.max = +r.decodeCostMs.max.toFixed(3);
    delete r.decodeCostMs.total;
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    r.decodedFrames = q ? q.totalVideoFrames : null;
    r.droppedFrames = q ? q.droppedVideoFrames : null;
    r.width = video.videoWidth;
    r.height = video.videoHeight;
    hls.destroy();
    return r;
  }, { url, seconds, geometry, hlsConfig, startTimeout });
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + '\n');
