// Plays an HLS URL with hls.js (lowLatencyMode) in headless Chromium and
// prints one JSON report on stdout. Driven by the Rust integration tests.
//
// usage: node play.mjs URL SECONDS [--switch-level N] [--hls-config JSON]
//                       [--chromium-arg ARG]...
//
// --hls-config: a JSON object merged over the default Hls config
// ({ lowLatencyMode: true, debug: false }), e.g. '{"maxLiveSyncPlaybackRate":1.5}'.
// --chromium-arg: one more Chromium command-line switch (repeatable), e.g.
// '--ignore-certificate-errors-spki-list=BASE64' or
// '--origin-to-force-quic-on=127.0.0.1:8443'.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, secondsArg, ...rest] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 10);
const switchIdx = rest.indexOf('--switch-level');
const switchLevel = switchIdx >= 0 ? Number(rest[switchIdx + 1]) : null;
const configIdx = rest.indexOf('--hls-config');
const hlsConfig = configIdx >= 0 ? JSON.parse(rest[configIdx + 1] ?? 'null') : {};
const chromiumArgs = [];
rest.forEach((arg, i) => {
  if (arg !== '--chromium-arg') return;
  const value = rest[i + 1];
  if (value === undefined || !value.startsWith('--')) {
    throw new Error('--chromium-arg needs a switch like --name=value');
  }
  chromiumArgs.push(value);
});
if (hlsConfig === null || typeof hlsConfig !== 'object' || Array.isArray(hlsConfig)) {
  throw new Error('--hls-config needs a JSON object');
}
const require = createRequire(import.meta.url);
const hlsPath = require.resolve('hls.js/dist/hls.min.js');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const userDataDir = mkdtempSync(join(tmpdir(), 'ferrocast-chromium-'));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    ...chromiumArgs,
  ],
});
let report;
try {
  const page = await context.newPage();
  await page.setContent('<!doctype html><video id="v" muted autoplay playsinline></video>');
  await page.addScriptTag({ path: hlsPath });
  report = await page.evaluate(async ({ url, seconds, switchLevel, hlsConfig }) => {
    const video = document.getElementById('v');
    const r = { supported: Hls.isSupported(), fatal: [], errors: [], stalls: 0, playing: false,
                firstPlayingMs: null, samples: [], levels: [], levelSwitches: [] };
    const hls = new Hls({ lowLatencyMode: true, debug: false, ...hlsConfig });
    const t0 = performance.now();
    hls.on(Hls.Events.ERROR, (_, d) => {
      (d.fatal ? r.fatal : r.errors).push(`${d.type}:${d.details}`);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
      r.levels = d.levels.map(l => ({ width: l.width, height: l.height, bitrate: l.bitrate, codecs: l.codecSet }));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => r.levelSwitches.push(d.level));
    video.addEventListener('playing', () => {
      if (!r.playing) { r.playing = true; r.firstPlayingMs = performance.now() - t0; }
    });
    video.addEventListener('waiting', () => { if (r.playing) r.stalls += 1; });
    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
    const end = t0 + seconds * 1000;
    let switched = false;
    while (performance.now() < end) {
      await new Promise(res => setTimeout(res, 250));
      if (switchLevel !== null && !switched && r.playing && performance.now() - t0 > seconds * 500) {
        hls.currentLevel = switchLevel; switched = true;
      }
      r.samples.push({ t: Math.round(performance.now() - t0), currentTime: video.currentTime,
                       latency: hls.latency,
                       // Wall clock minus the program date time being shown (null without PDT).
                       pdtLatency: hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null,
                       buffered: video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0 });
    }
    r.decodedFrames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : null;
    r.droppedFrames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().droppedVideoFrames : null;
    r.width = video.videoWidth; r.height = video.videoHeight;
    hls.destroy();
    return r;
  }, { url, seconds, switchLevel, hlsConfig });
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + '\n');
