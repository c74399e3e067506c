// The clock band of benches/g2g/clock_sender.py, decoded. One file for both
// the browser page of tests/browser/g2g.mjs (loaded as a plain script: it
// sets `globalThis.G2GBand`) and Node (`require`: benches/g2g/selftest.mjs).
//
// The band: `rows` x `cols` square blocks of `block` px, its top left corner
// at (x0, y0) of the sender's picture, read row by row, left to right. Each
// block is black (luma 16) for 0 or white (luma 235) for 1:
//
//   4 blocks   sync / reference 1 0 1 0: the decoder takes its threshold and
//              contrast from them
//   48 blocks  Unix time in milliseconds when the sender made the frame,
//              most significant bit first
//   16 blocks  frame sequence number (mod 65536), most significant bit first
//   16 blocks  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the six
//              time bytes and two sequence bytes, big-endian
//
// clock_sender.py (`--geometry`) gives the geometry as JSON; the decoder
// takes it as given and never guesses it.
'use strict';

const SYNC = [1, 0, 1, 0];
const MS_BITS = 48;
const SEQ_BITS = 16;
const CRC_BITS = 16;
const CELLS = SYNC.length + MS_BITS + SEQ_BITS + CRC_BITS;

function crc16(bytes) {
  let crc = 0xffff;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

// Mean of one channel over the centre half (each way) of every block.
// `data`: pixels of the band alone, its origin at the band's top left, in
// the sender's pixel units; `stride`: pixels per row; `channels`: 1 (luma)
// or 4 (RGBA from a canvas; the red channel is read: the band is grey).
function cellMeans(data, stride, channels, g) {
  const b = g.block;
  const lo = Math.floor(b / 4);
  const hi = Math.ceil((3 * b) / 4);
  const means = new Array(g.rows * g.cols);
  for (let r = 0; r < g.rows; r++) {
    for (let c = 0; c < g.cols; c++) {
      let sum = 0;
      let n = 0;
      for (let y = r * b + lo; y < r * b + hi; y++) {
        let i = (y * stride + c * b + lo) * channels;
        for (let x = lo; x < hi; x++, i += channels) {
          sum += data[i];
          n++;
        }
      }
      means[r * g.cols + c] = sum / n;
    }
  }
  return means;
}

// -> { ok: true, ms, seq } or { ok: false, reason } with reason one of
// 'geometry', 'contrast' (no band: the sync blocks are not black and
// white), 'ambiguous' (a block too close to the threshold), 'crc'.
function decodeBand(data, stride, channels, g) {
  if (g.rows * g.cols < CELLS) return { ok: false, reason: 'geometry' };
  const means = cellMeans(data, stride, channels, g);
  let white = 0;
  let black = 0;
  SYNC.forEach((bit, i) => {
    if (bit) white += means[i];
    else black += means[i];
  });
  white /= SYNC.filter(b => b).length;
  black /= SYNC.filter(b => !b).length;
  const contrast = white - black;
  // Full swing is about 219 (limited range) or 255 (a canvas's RGB).
  if (!(contrast > 64)) return { ok: false, reason: 'contrast' };
  const threshold = (white + black) / 2;
  for (let i = 0; i < SYNC.length; i++) {
    if ((means[i] > threshold ? 1 : 0) !== SYNC[i]) return { ok: false, reason: 'contrast' };
  }
  const bits = [];
  for (let i = SYNC.length; i < CELLS; i++) {
    const d = (means[i] - threshold) / contrast;
    if (Math.abs(d) < 0.25) return { ok: false, reason: 'ambiguous' };
    bits.push(d > 0 ? 1 : 0);
  }
  const bytes = [];
  for (let i = 0; i < MS_BITS + SEQ_BITS; i += 8) {
    let v = 0;
    for (let j = 0; j < 8; j++) v = v * 2 + bits[i + j];
    bytes.push(v);
  }
  let crc = 0;
  for (let i = MS_BITS + SEQ_BITS; i < MS_BITS + SEQ_BITS + CRC_BITS; i++) crc = crc * 2 + bits[i];
  if (crc16(bytes) !== crc) return { ok: false, reason: 'crc' };
  let ms = 0;
  for (let i = 0; i < MS_BITS; i++) ms = ms * 2 + bits[i];
  let seq = 0;
  for (let i = MS_BITS; i < MS_BITS + SEQ_BITS; i++) seq = seq * 2 + bits[i];
  return { ok: true, ms, seq };
}

const api = { decodeBand, crc16, cellMeans, CELLS };
if (typeof module !== 'undefined' && module.exports) module.exports = api;
else globalThis.G2GBand = api;
