// Drives Ferrocast's own pages in headless Chromium and prints one JSON
// report on stdout; saves screenshots into OUTDIR. Driven by the Rust
// integration tests (services/ferrocast/tests/dashboard.rs).
//
// usage:
//   node ui.mjs dashboard URL OUTDIR --token TOKEN --live NAME --create NAME
//   node ui.mjs player URL OUTDIR [--chromium-arg ARG]...
//
// dashboard: signs in with TOKEN, waits until stream NAME (--live) is
// listed live with a thumbnail, measures the thumbnail's pixels, creates
// stream --create through the page and reads the key and push URLs it
// shows, then opens the live stream's page and waits for its chart.
// player: opens the player page (its hls.js from the CDN is served from
// node_modules, the same release pinned by its integrity hash) and waits
// until it plays with a latency and a rendition shown.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [scenario, url, outdir, ...rest] = process.argv.slice(2);
const option = (name) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : undefined;
};
const chromiumArgs = [];
rest.forEach((arg, i) => {
  if (arg === '--chromium-arg') chromiumArgs.push(rest[i + 1]);
});
const require = createRequire(import.meta.url);
const hlsPath = require.resolve('hls.js/dist/hls.min.js');
const userDataDir = mkdtempSync(join(tmpdir(), 'ferrocast-ui-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    ...chromiumArgs,
  ],
});
const consoleErrors = [];
let report;
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  // No network here: the CDN's hls.js comes from node_modules.
  await page.route('https://cdn.jsdelivr.net/**', (route) =>
    route.fulfill({ path: hlsPath, contentType: 'application/javascript', headers: { 'Access-Control-Allow-Origin': '*' } }));
  report = scenario === 'dashboard' ? await dashboard(page) : await player(page);
} catch (e) {
  report = { failed: String(e && e.stack || e) };
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
report.pageErrors = consoleErrors;
console.log(JSON.stringify(report));

async function dashboard(page) {
  const live = option('--live');
  const create = option('--create');
  await page.goto(url);
  await page.fill('#token', option('--token'));
  await page.click('#login button[type=submit]');
  const row = `tr[data-stream="${live}"]`;
  // Listed live, with a thumbnail loaded.
  await page.waitForFunction((sel) => {
    const tr = document.querySelector(sel);
    const img = tr && tr.querySelector('img.thumb');
    return tr && tr.children[2].textContent === 'live' && img && img.complete && img.naturalWidth > 0;
  }, row, { timeout: 45000 });
  const rows = await page.$$eval('#streams tr', (trs) => trs.map((tr) =>
    ({ name: tr.dataset.stream, cells: [...tr.children].map((td) => td.textContent) })));
  // The thumbnail's pixels: size and spread of luminance (a blank or
  // single-colour picture has none).
  const thumb = await page.$eval(`${row} img.thumb`, (img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let sum = 0, sq = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      sum += y;
      sq += y * y;
    }
    const mean = sum / n;
    return { width: img.naturalWidth, height: img.naturalHeight, mean, stddev: Math.sqrt(Math.max(0, sq / n - mean * mean)) };
  });
  await page.screenshot({ path: join(outdir, 'dashboard.png'), fullPage: true });

  await page.fill('#new-name', create);
  await page.click('#create button[type=submit]');
  await page.waitForSelector('#key-panel:not([hidden])', { timeout: 15000 });
  const created = {
    stream: await page.textContent('#key-stream'),
    key: await page.textContent('#key'),
    srtUrl: await page.textContent('#push-srt'),
    ffmpeg: await page.textContent('#push-ffmpeg'),
  };
  await page.screenshot({ path: join(outdir, 'dashboard-key.png'), fullPage: true });

  await page.goto(url + '#/streams/' + encodeURIComponent(live));
  await page.waitForFunction(() => (window.ferrocastDashboard.charted || 0) >= 2, null, { timeout: 30000 });
  const detail = await page.textContent('#detail-summary');
  await page.screenshot({ path: join(outdir, 'dashboard-stream.png'), fullPage: true });
  return { rows, thumb, created, detail };
}

async function player(page) {
  await page.goto(url);
  await page.waitForFunction(() => {
    const p = window.ferrocastPlayer;
    return p && (p.error || (p.playing && p.latency !== null && p.rendition !== null));
  }, null, { timeout: 45000 });
  const t0 = await page.$eval('#video', (v) => v.currentTime);
  const failed = await page.evaluate(() => window.ferrocastPlayer.error);
  // Still playing: three more seconds of media played.
  if (!failed) {
    await page.waitForFunction((start) => document.getElementById('video').currentTime > start + 3,
      t0, { timeout: 20000 }).catch(() => {});
  }
  const state = await page.evaluate(() => {
    const p = window.ferrocastPlayer;
    const v = document.getElementById('video');
    return {
      error: p.error, playing: p.playing, latency: p.latency, rendition: p.rendition,
      currentTime: v.currentTime, width: v.videoWidth, height: v.videoHeight,
      latencyText: document.getElementById('latency').textContent,
      renditionText: document.getElementById('rendition').textContent,
      share: document.getElementById('share').value,
    };
  });
  await page.screenshot({ path: join(outdir, 'player.png'), fullPage: true });
  return { ...state, startTime: t0 };
}
