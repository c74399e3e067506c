#!/usr/bin/env python3
"""A live source that burns the wall clock into every frame.

Frames are made here at the frame rate, each stamped with time.time() taken
just before it is composed, and written as raw yuv420p to ffmpeg's stdin;
ffmpeg encodes them (libx264, -tune zerolatency, a keyframe every second) with
a sine for audio (AAC) and writes whatever output follows `--`, e.g.

    clock_sender.py --size 1280x720 --fps 30 -- \
        -f mpegts 'srt://127.0.0.1:9000?streamid=publish:live/g2g&latency=120000'

The clock is a band of black and white blocks at the top left of the picture
(layout in band.cjs, which decodes it): 4 sync blocks 1010, the Unix time in
milliseconds (48 bits), a frame number (16 bits), a CRC-16 of both (16
bits), 84 blocks in 3 rows of 28. Blocks are 16 px or a multiple of 16 px
(32 at 1280x720), aligned to x264's macroblocks, at luma 16 and 235, so
that compression does not flip them; the player averages the middle of each
block, and a frame that fails the CRC is rejected, not misread. Below the
band, ffmpeg's testsrc2 (`--content testsrc2`, the default) gives the
encoder a picture of ordinary complexity; `--content plain` leaves grey with
a moving square (cheaper).

Other modes:
    clock_sender.py --geometry --size WxH   print the band geometry as JSON
    clock_sender.py --selftest              encode and decode the band (raw and
                                            through libx264) with band.cjs under
                                            Node; exit status 0 when they agree

Standard library only. SIGTERM or SIGINT stops it cleanly (ffmpeg gets end
of input); `--stats FILE` then gets a JSON summary: frames written, how late
the sender ever was against its schedule after the first second.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLS, ROWS = 28, 3
SYNC = (1, 0, 1, 0)
MS_BITS, SEQ_BITS, CRC_BITS = 48, 16, 16
BLACK, WHITE, GREY = 16, 235, 128


def geometry(width, height):
    """Band geometry for a WxH picture: a one-block margin all round."""
    if width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: width and height must be even (yuv420p)")
    block = (width // (COLS + 2)) // 16 * 16
    block = max(block, 16)
    if (COLS + 2) * block > width or (ROWS + 2) * block > height:
        raise ValueError(f"{width}x{height} is too small for the clock band "
                         f"(needs at least {(COLS + 2) * 16}x{(ROWS + 2) * 16})")
    return {
        "width": width, "height": height, "block": block,
        "x0": block, "y0": block, "cols": COLS, "rows": ROWS,
        # First picture line below the band and its margin.
        "bottom": (ROWS + 2) * block,
        "black": BLACK, "white": WHITE,
    }


def crc16(data):
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def band_bits(ms, seq):
    ms &= (1 << MS_BITS) - 1
    seq &= (1 << SEQ_BITS) - 1
    payload = ms.to_bytes(6, "big") + seq.to_bytes(2, "big")
    word = (ms << (SEQ_BITS + CRC_BITS)) | (seq << CRC_BITS) | crc16(payload)
    n = MS_BITS + SEQ_BITS + CRC_BITS
    return list(SYNC) + [(word >> (n - 1 - i)) & 1 for i in range(n)]


class FrameMaker:
    """Builds yuv420p frames: grey, the band, optionally a moving square."""

    def __init__(self, width, height, square=True):
        self.g = geometry(width, height)
        self.w, self.h = width, height
        self.background = bytes([GREY]) * (width * height)
        self.chroma = bytes([128]) * (width * height // 2)
        b = self.g["block"]
        self.blocks = (bytes([BLACK]) * b, bytes([WHITE]) * b)
        self.square = square

    def luma(self, ms, seq, bits=None):
        g, w = self.g, self.w
        b, x0, y0 = g["block"], g["x0"], g["y0"]
        y = bytearray(self.background)
        bits = band_bits(ms, seq) if bits is None else bits
        for r in range(ROWS):
            row = b"".join(self.blocks[bit] for bit in bits[r * COLS:(r + 1) * COLS])
            for line in range(y0 + r * b, y0 + (r + 1) * b):
                start = line * w + x0
                y[start:start + len(row)] = row
        if self.square:
            side = min(96, (self.h - g["bottom"]) // 2)
            x = (seq * 8) % max(1, w - side)
            top = g["bottom"] + (self.h - g["bottom"] - side) // 2
            bar = bytes([200]) * side
            for line in range(top, top + side):
                y[line * w + x:line * w + x + side] = bar
        return y

    def frame(self, ms, seq, bits=None):
        return bytes(self.luma(ms, seq, bits)) + self.chroma


def encoder_args(width, height, fps, content, geom, preset="veryfast", tune="zerolatency"):
    """ffmpeg's inputs and encoder settings; the output follows."""
    args = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}",
            "-framerate", str(fps), "-i", "pipe:0",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    if content == "testsrc2":
        below = height - geom["bottom"]
        args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{below}:rate={fps}",
                 "-filter_complex",
                 f"[0:v][2:v]overlay=x=0:y={geom['bottom']}:eof_action=pass:shortest=0[v]",
                 "-map", "[v]"]
    else:
        args += ["-map", "0:v"]
    args += ["-map", "1:a",
             "-c:v", "libx264", "-preset", preset]
    if tune:
        args += ["-tune", tune]
    args += ["-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
             "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "64k", "-ar", "48000"]
    return args


def parse_size(text):
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


# ---- sending ----------------------------------------------------------------

class Stop(Exception):
    pass


def send(opts, output):
    width, height = parse_size(opts.size)
    maker = FrameMaker(width, height, square=opts.content == "plain")
    cmd = (["ffmpeg", "-hide_banner", "-loglevel", opts.loglevel]
           + encoder_args(width, height, opts.fps, opts.content, maker.g,
                          preset=opts.preset, tune=opts.tune)
           + output)
    ffmpeg = subprocess.Popen(cmd, stdin=subprocess.PIPE)

    def stop(signum, _frame):
        raise Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    interval = 1.0 / opts.fps
    frames = 0
    late_frames = 0
    max_late = 0.0
    t0 = time.time()
    started = t0
    reason = "seconds"
    try:
        while opts.seconds <= 0 or frames < opts.seconds * opts.fps:
            due = t0 + frames * interval
            now = time.time()
            if due > now:
                time.sleep(due - now)
            stamp = time.time()
            late = stamp - due
            if frames >= opts.fps:  # past ffmpeg's start-up
                if late > interval:
                    late_frames += 1
                max_late = max(max_late, late)
            ms = int(round(stamp * 1000))
            ffmpeg.stdin.write(maker.frame(ms, frames))
            ffmpeg.stdin.flush()
            frames += 1
    except Stop:
        reason = "signal"
    except BrokenPipeError:
        reason = "ffmpeg exited"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ended = time.time()
        # SIGINT first: ffmpeg stops reading, flushes and ends the file or
        # stream cleanly (closing its input alone would not end it: the sine
        # never ends, and would be encoded as fast as it goes). Then SIGTERM,
        # then SIGKILL.
        if ffmpeg.poll() is None:
            ffmpeg.send_signal(signal.SIGINT)
        try:
            ffmpeg.stdin.close()
        except OSError:
            pass
        try:
            ffmpeg.wait(timeout=3)
        except subprocess.TimeoutExpired:
            ffmpeg.terminate()
            try:
                ffmpeg.wait(timeout=2)
            except subprocess.TimeoutExpired:
                ffmpeg.kill()
                ffmpeg.wait()
        stats = {
            "frames": frames, "fps": opts.fps, "size": f"{width}x{height}",
            "seconds": round(ended - started, 3),
            "achieved_fps": round(frames / (ended - started), 3) if ended > started else None,
            "late_frames": late_frames, "max_late_ms": round(max_late * 1000, 1),
            "stopped_by": reason, "ffmpeg_status": ffmpeg.returncode,
        }
        if opts.stats:
            with open(opts.stats, "w") as f:
                json.dump(stats, f)
                f.write("\n")
    return 0 if reason != "ffmpeg exited" else 1


# ---- self-test ----------------------------------------------------------------

def selftest(opts):
    """Encode the band, decode it with band.cjs under Node: raw frames, frames
    with a flipped block or no band (must be rejected), and a few seconds
    through libx264 (the sender's settings, then a starved bitrate) and back."""
    node = shutil.which("node")
    if not node:
        print("selftest: node is missing", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="g2g-selftest.")
    try:
        cases = []
        base_ms = 1_765_000_000_123  # December 2025
        for width, height in ((1280, 720), (640, 360), (1920, 1080)):
            maker = FrameMaker(width, height)
            g = maker.g
            tag = f"{width}x{height}"
            # 1. Raw frames: known values, all-ones, all-zeros, now.
            values = [(base_ms, 4242), ((1 << 48) - 1, 65535), (0, 0),
                      (int(time.time() * 1000), 7)]
            path = os.path.join(tmp, f"raw-{tag}.yuv")
            with open(path, "wb") as f:
                for ms, seq in values:
                    f.write(maker.frame(ms, seq))
            cases.append({"name": f"raw {tag}", "file": path, "geometry": g,
                          "expect": [{"ms": ms, "seq": seq} for ms, seq in values]})
            # 2. Must be rejected: one data block flipped (CRC), no band.
            path = os.path.join(tmp, f"bad-{tag}.yuv")
            with open(path, "wb") as f:
                for flip in (4, 30, 52, 70, 83):
                    bits = band_bits(base_ms, 99)
                    bits[flip] ^= 1
                    f.write(maker.frame(base_ms, 99, bits))
                f.write(bytes([GREY]) * (width * height) + maker.chroma)
            cases.append({"name": f"corrupt {tag}", "file": path, "geometry": g,
                          "expect": [{"reject": "crc"}] * 5 + [{"reject": "contrast"}]})
            # 3. Through libx264 and back: 3 s at 30 fps, the sender's settings
            # (with testsrc2 below the band), then at 150 kb/s.
            if width > 1280 and not opts.full:
                continue
            fps, n = 30, 90
            stamps = [(base_ms + i * 33, i) for i in range(n)]
            src = os.path.join(tmp, f"src-{tag}.yuv")
            with open(src, "wb") as f:
                for ms, seq in stamps:
                    f.write(maker.frame(ms, seq))
            for label, extra in (("sender settings", []),
                                 ("150 kb/s", ["-b:v", "150k", "-maxrate", "150k",
                                               "-bufsize", "150k"])):
                h264 = os.path.join(tmp, f"x264-{tag}-{len(cases)}.mkv")
                enc = (["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
                       + encoder_args(width, height, fps, "testsrc2", g)
                       + extra + ["-frames:v", str(n), "-an", h264])
                enc[enc.index("pipe:0")] = src
                subprocess.run(enc, check=True)
                out = os.path.join(tmp, f"dec-{tag}-{len(cases)}.yuv")
                subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", h264,
                                "-f", "rawvideo", "-pix_fmt", "yuv420p", out], check=True)
                cases.append({"name": f"libx264 {label} {tag}", "file": out, "geometry": g,
                              "expect": [{"ms": ms, "seq": seq} for ms, seq in stamps]})
        with open(os.path.join(tmp, "cases.json"), "w") as f:
            json.dump(cases, f)
        status = subprocess.run([node, os.path.join(HERE, "selftest.mjs"),
                                 os.path.join(tmp, "cases.json")]).returncode
        print("selftest: " + ("ok" if status == 0 else "FAILED"), file=sys.stderr)
        return status
    finally:
        if opts.keep:
            print(f"selftest: files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    if "--" in argv:
        cut = argv.index("--")
        argv, output = argv[:cut], argv[cut + 1:]
    else:
        output = []
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1280x720", help="WxH (default 1280x720)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until killed)")
    p.add_argument("--content", choices=("testsrc2", "plain"), default="testsrc2",
                   help="picture below the band (default testsrc2)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")
    p.add_argument("--tune", default="zerolatency", help="x264 tune (default zerolatency; '' for none)")
    p.add_argument("--loglevel", default="error", help="ffmpeg -loglevel (default error)")
    p.add_argument("--stats", help="write a JSON summary here on exit")
    p.add_argument("--geometry", action="store_true", help="print the band geometry as JSON and exit")
    p.add_argument("--selftest", action="store_true", help="check encoder and decoder agree, and exit")
    p.add_argument("--full", action="store_true", help="with --selftest: 1080p through libx264 too")
    p.add_argument("--keep", action="store_true", help="with --selftest: keep the files")
    opts = p.parse_args(argv)
    if opts.geometry:
        print(json.dumps(geometry(*parse_size(opts.size))))
        return 0
    if opts.selftest:
        return selftest(opts)
    if not output:
        p.error("give ffmpeg's output after --, e.g. -- -f mpegts 'srt://HOST:PORT?...'")
    return send(opts, output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
