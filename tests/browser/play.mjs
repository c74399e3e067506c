// Plays an HLS URL with hls.js (lowLatencyMode) in headless Chromium and
// prints one JSON report on stdout. Driven by the Rust integration tests.
//
// usage: node play.mjs URL SECONDS [--switch-level N] [--hls-config JSON]
//                       [--chromium-arg ARG]... [--hls-debug]
//
// --hls-config: a JSON object merged over the default Hls config
// ({ lowLatencyMode: true, debug: false }), e.g. '{"maxLiveSyncPlaybackRate":1.5}'.
// --chromium-arg: one more Chromium command-line switch (repeatable), e.g.
// '--ignore-certificate-errors-spki-list=BASE64' or
// '--origin-to-force-quic-on=127.0.0.1:8443'.
// --switch-level N: half way through, a smooth switch to level N
// (`hls.nextLevel`).
// --seek-back S: a third of the way through, seek S seconds back from
// where it plays (a viewer scrubbing back in a DVR window); the report's
// `seek` says from where to where and when.
// --hls-debug: hls.js's debug log into `events`, a dump of its view of
// the playlist half a second into each stall, and Chromium's own media log
// (the DevTools `Media` domain: buffering state changes per renderer with
// their reason, demuxer or decoder underflow, and its messages).
//
// The report: `stalls` ('waiting' while playing, not seeking), `samples`
// (every 250 ms: currentTime, buffered ahead, latency), `requests` (every
// request the page made: start, end, status, path), `events` (playing,
// waiting, errors, level switches), levels, audio tracks, frames. Times in `samples`,
// `requests` and `events` are ms since the player started, on one clock.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, secondsArg, ...rest] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 10);
const switchIdx = rest.indexOf('--switch-level');
const switchLevel = switchIdx >= 0 ? Number(rest[switchIdx + 1]) : null;
const seekIdx = rest.indexOf('--seek-back');
const seekBack = seekIdx >= 0 ? Number(rest[seekIdx + 1]) : null;
// --hls-debug: hls.js's own debug log, timestamped, into the report's events.
const hlsDebug = rest.includes('--hls-debug');
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
  // Every request the page makes, for diagnosing stalls: start and end in
  // ms since the player started (wall clock), path and query, status.
  const requests = [];
  const pending = new Map();
  let wall0 = null;
  const rel = () => (wall0 === null ? 0 : Date.now() - wall0);
  page.on('request', req => {
    const u = new URL(req.url());
    const entry = { start: rel(), end: null, status: null, path: u.pathname + u.search };
    pending.set(req, entry);
    requests.push(entry);
  });
  page.on('requestfinished', async req => {
    const entry = pending.get(req);
    if (!entry) return;
    entry.end = rel();
    pending.delete(req);
    const res = await req.response().catch(() => null);
    entry.status = res ? res.status() : null;
  });
  page.on('requestfailed', req => {
    const entry = pending.get(req);
    if (!entry) return;
    entry.end = rel();
    entry.status = `failed: ${req.failure()?.errorText}`;
    pending.delete(req);
  });
  // Chromium's media log, with --hls-debug, merged into `events` below.
  const mediaLog = [];
  if (hlsDebug) {
    const cdp = await context.newCDPSession(page);
    const log = (what, t = rel(), at = null) => mediaLog.push({ t, at, what: `chromium ${what}` });
    // Events are delivered in batches, and carry when Chromium logged them
    // (seconds on its own monotonic clock): placed on our clock below.
    cdp.on('Media.playerEventsAdded', e => e.events.forEach(ev =>
      log(`event: ${ev.value}`, rel(), ev.timestamp * 1000)));
    cdp.on('Media.playerMessagesLogged', e => e.messages.forEach(m => log(`${m.level}: ${m.message}`)));
    cdp.on('Media.playerErrorsRaised', e => e.errors.forEach(err => log(`error: ${JSON.stringify(err)}`)));
    cdp.on('Media.playerPropertiesChanged', e => e.properties
      .filter(p => !/^(kFrameUrl|kFrameTitle|kIsVideoEncrypted|kIsStreaming)$/.test(p.name))
      .forEach(p => log(`property: ${p.name}=${p.value}`)));
    await cdp.send('Media.enable');
  }
  await page.setContent('<!doctype html><video id="v" muted autoplay playsinline></video>');
  await page.addScriptTag({ path: hlsPath });
  wall0 = Date.now();
  report = await page.evaluate(async ({ url, seconds, switchLevel, seekBack, hlsConfig, hlsDebug, wall0 }) => {
    const video = document.getElementById('v');
    const r = { supported: Hls.isSupported(), fatal: [], errors: [], stalls: 0, playing: false,
                firstPlayingMs: null, samples: [], levels: [], levelSwitches: [], events: [] };
    // Milliseconds since the player started, on the clock the request log uses.
    const now = () => Date.now() - wall0;
    const event = what => r.events.push({ t: now(), what });
    const logTo = level => (...args) => event(`hls.js ${level}: ${args.map(String).join(' ')}`);
    const debug = hlsDebug
      ? { trace: logTo('trace'), debug: logTo('debug'), log: logTo('log'), info: logTo('info'),
          warn: logTo('warn'), error: logTo('error') }
      : false;
    const hls = new Hls({ lowLatencyMode: true, debug, ...hlsConfig });
    const t0 = performance.now();
    hls.on(Hls.Events.ERROR, (_, d) => {
      (d.fatal ? r.fatal : r.errors).push(`${d.type}:${d.details}`);
      event(`error ${d.type}:${d.details}${d.fatal ? ' (fatal)' : ''}`);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
      r.levels = d.levels.map(l => ({ width: l.width, height: l.height, bitrate: l.bitrate, codecs: l.codecSet }));
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => { r.levelSwitches.push(d.level); event(`level switched to ${d.level}`); });
    video.addEventListener('playing', () => {
      if (!r.playing) { r.playing = true; r.firstPlayingMs = performance.now() - t0; event('playing'); }
    });
    video.addEventListener('waiting', () => {
      // A stall is the playhead running out of media while playing; a seek
      // (hls.js moving to its target latency, or over a hole it found)
      // fires 'waiting' too, and is not one.
      if (r.playing && !video.seeking) r.stalls += 1;
      event(`waiting at ${video.currentTime.toFixed(3)}${video.seeking ? ' (seeking)' : ''}`);
      if (hlsDebug) setTimeout(dumpState, 500);
    });
    // With --hls-debug: hls.js's view of the playlist it is loading from
    // (last fragments and parts, their tracker states), half a second into
    // a stall.
    const dumpState = () => {
      const details = hls.levels[hls.loadLevel]?.details;
      const tracker = hls.streamController?.fragmentTracker;
      if (!details) return;
      const frag = f => f && ({ sn: f.sn, start: f.start, duration: f.duration, relurl: f.relurl ?? null,
                               state: tracker ? tracker.getState(f) : null });
      event(`state: ${JSON.stringify({
        fragments: details.fragments.slice(-3).map(frag), fragmentHint: frag(details.fragmentHint),
        parts: (details.partList ?? []).slice(-7).map(p => ({ sn: p.fragment.sn, index: p.index, start: p.start,
                                                              duration: p.duration, loaded: p.loaded })),
        buffered: Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]),
        state: hls.streamController?.state })}`);
    };
    hls.loadSource(url);
    hls.attachMedia(video);
    video.play().catch(() => {});
    const end = t0 + seconds * 1000;
    let switched = false;
    let sought = false;
    while (performance.now() < end) {
      await new Promise(res => setTimeout(res, 250));
      if (seekBack !== null && !sought && r.playing && performance.now() - t0 > seconds * 333) {
        const from = video.currentTime;
        video.currentTime = Math.max(0, from - seekBack);
        sought = true;
        r.seek = { t: now(), from, to: video.currentTime };
        event(`seek back ${seekBack} s from ${from.toFixed(3)}`);
      }
      if (switchLevel !== null && !switched && r.playing && performance.now() - t0 > seconds * 500) {
        // A smooth switch (what ABR does): keep what is buffered and load
        // the next fragments from the new level. `currentLevel` would flush
        // the whole buffer, a stall by design.
        hls.nextLevel = switchLevel; switched = true;
        event(`switch to level ${switchLevel} requested`);
      }
      r.samples.push({ t: now(), currentTime: video.currentTime,
                       latency: hls.latency,
                       // Wall clock minus the program date time being shown (null without PDT).
                       pdtLatency: hls.playingDate ? (Date.now() - hls.playingDate.getTime()) / 1000 : null,
                       buffered: video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0 });
    }
    r.decodedFrames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : null;
    r.droppedFrames = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().droppedVideoFrames : null;
    r.width = video.videoWidth; r.height = video.videoHeight;
    // Alternate audio renditions hls.js found (EXT-X-MEDIA:TYPE=AUDIO).
    r.audioTracks = hls.audioTracks.map(t => ({ name: t.name, groupId: t.groupId, url: t.url }));
    hls.destroy();
    return r;
  }, { url, seconds, switchLevel, seekBack, hlsConfig, hlsDebug, wall0 });
  report.requests = requests;
  // Chromium's clock is anchored where its pipeline first had enough to
  // play, which is when the page saw 'playing' (to a few ms).
  const anchor = mediaLog.find(e => e.what.includes('"pipeline_buffering_state"') && e.what.includes('HAVE_ENOUGH'))?.at;
  const playing = report.events.find(e => e.what === 'playing')?.t;
  for (const e of mediaLog) {
    if (anchor !== undefined && playing !== undefined && e.at !== null) e.t = Math.round(playing + e.at - anchor);
    delete e.at;
  }
  report.events = [...report.events, ...mediaLog].sort((a, b) => a.t - b.t);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + '\n');
