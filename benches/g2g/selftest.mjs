// Decodes the clock band of raw yuv420p frames with band.cjs (the decoder
// the browser page uses) and checks every frame against what
// clock_sender.py says it wrote. Run by `clock_sender.py --selftest`.
//
// usage: node selftest.mjs CASES.json
// CASES.json: [{ name, file, geometry, expect: [{ ms, seq } | { reject: REASON }] }]
import { createRequire } from 'node:module';
import { openSync, readSync, closeSync, readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { decodeBand } = require('./band.cjs');

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let failed = 0;
for (const c of cases) {
  const g = c.geometry;
  const frameBytes = (g.width * g.height * 3) / 2;
  const bandW = g.cols * g.block;
  const bandH = g.rows * g.block;
  const fd = openSync(c.file, 'r');
  const frame = Buffer.alloc(frameBytes);
  const band = new Uint8Array(bandW * bandH);
  let ok = 0;
  const problems = [];
  c.expect.forEach((want, i) => {
    const n = readSync(fd, frame, 0, frameBytes, i * frameBytes);
    if (n !== frameBytes) {
      problems.push(`frame ${i}: file ends`);
      return;
    }
    // The band's pixels of the luma plane, as the page crops them from a canvas.
    for (let y = 0; y < bandH; y++) {
      const from = (g.y0 + y) * g.width + g.x0;
      band.set(frame.subarray(from, from + bandW), y * bandW);
    }
    const got = decodeBand(band, bandW, 1, g);
    const good = want.reject !== undefined
      ? !got.ok && got.reason === want.reject
      : got.ok && got.ms === want.ms && got.seq === want.seq;
    if (good) ok++;
    else problems.push(`frame ${i}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  });
  closeSync(fd);
  const pass = ok === c.expect.length;
  if (!pass) failed++;
  console.error(`${pass ? 'ok  ' : 'FAIL'} ${c.name}: ${ok}/${c.expect.length} frames as expected`);
  for (const p of problems.slice(0, 5)) console.error(`       ${p}`);
}
process.exit(failed ? 1 : 0);
