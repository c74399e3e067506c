#!/usr/bin/env bash
# Glass-to-glass latency by the clock in the picture: Ferrocast LL-HLS (one
# run per part length) against ffmpeg's own HLS muxer, each fed by the same
# live sender over SRT and played by hls.js in headless Chromium.
#
# The sender (benches/g2g/clock_sender.py) burns its wall clock into every
# frame as a band of black and white blocks (Unix ms + frame number + CRC)
# and pushes H.264 + AAC in MPEG-TS over SRT; the player
# (tests/browser/g2g.mjs) decodes the band of every frame it presents
# (requestVideoFrameCallback) and compares it with its own Date.now(): the
# same machine, so the same clock. See docs/BENCHMARKS.md.
#
# usage: benches/glass_to_glass.sh
#        RUNS=3 PLAY_SECONDS=60 SIZE=640x360 benches/glass_to_glass.sh
#
# Environment (all optional):
#   FERROCAST_BIN  the ferrocast binary (default
#                  ${CARGO_TARGET_DIR:-$HOME/.cache/ferrocast/target}/release/ferrocast;
#                  this script never builds: `cargo build --release -p ferrocast`)
#   RUNS           runs per server (default 3); each run plays every server
#                  once, in turn
#   PLAY_SECONDS   seconds of playback measured per run, from the first
#                  'playing' (default 60)
#   JOIN_AFTER_S   the player joins once the stream has been live this long,
#                  as a viewer joins a running stream (default 8; the baseline
#                  then has the segments hls.js wants to hold back)
#   SIZE           picture size (default 1280x720; at least 480x80)
#   FPS            frame rate; the GOP is one second (default 30)
#   PART_MS        Ferrocast part targets to run, comma-separated (default
#                  200,100): [hls] part_target_ms of each server
#   HOLD_BACK_PARTS  [hls] part_hold_back_parts of every Ferrocast server
#                  (PART-HOLD-BACK in part targets, 2-10; default: the
#                  server's default, 3)
#   AUDIO          [hls] audio of every Ferrocast server: separate (the
#                  server's default: an EXT-X-MEDIA audio rendition) or
#                  muxed
#   BASELINE=0     skip the ffmpeg HLS baseline
#   HLS_CONFIG     JSON merged into the Hls config of every player
#                  (default: lowLatencyMode, hls.js defaults otherwise)
#   SRT_LATENCY_MS SRT latency of the sender and of both receivers
#                  (default 120, SRT's and Ferrocast's default)
#   PES_PAYLOAD_SIZE  the sender's mpegts -pes_payload_size (default 0: one
#                  audio frame per PES, as contribution encoders send;
#                  ffmpeg's own 2930 holds ~0.37 s of AAC per PES)
#   CONTENT        picture below the band: testsrc2 (default) or plain
#   OUT_DIR        keep every player report, sender summary and log here
#   START_TIMEOUT  seconds the player waits for its first 'playing' (default 30)
#   CHROMIUM       the Chromium binary (default /usr/bin/chromium)
#
# Every process started here is killed on exit; everything binds loopback
# on free ports.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
play_s=${PLAY_SECONDS:-60}
join_s=${JOIN_AFTER_S:-8}
size=${SIZE:-1280x720}
fps=${FPS:-30}
part_list=${PART_MS:-200,100}
hold_back_parts=${HOLD_BACK_PARTS:-}
audio=${AUDIO:-}
baseline=${BASELINE:-1}
hls_config=${HLS_CONFIG:-}
srt_latency=${SRT_LATENCY_MS:-120}
pes_payload=${PES_PAYLOAD_SIZE:-0}
content=${CONTENT:-testsrc2}
out_dir=${OUT_DIR:-}
start_timeout=${START_TIMEOUT:-30}

die() { echo "glass_to_glass.sh: $*" >&2; exit 1; }
[[ -z $hold_back_parts || $hold_back_parts =~ ^[0-9]+$ ]] || die "HOLD_BACK_PARTS: '$hold_back_parts' is not a number"
[[ -z $audio || $audio == muxed || $audio == separate ]] || die "AUDIO: '$audio' is neither muxed nor separate"
log() { printf '== %s %s\n' "$(date +%T)" "$*" >&2; }

for tool in ffmpeg node python3 curl setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || die "Chromium is missing (apt-get install chromium)"
[[ -d $root/tests/browser/node_modules/hls.js && -d $root/tests/browser/node_modules/playwright-core ]] ||
    die "tests/browser/node_modules is missing: (cd tests/browser && npm ci)"

if [[ -n ${FERROCAST_BIN:-} ]]; then
    ferrocast_bin=$FERROCAST_BIN
else
    ferrocast_bin=${CARGO_TARGET_DIR:-$HOME/.cache/ferrocast/target}/release/ferrocast
fi
[[ -x $ferrocast_bin ]] || die "no ferrocast binary at $ferrocast_bin: build it with
    cargo build --release -p ferrocast
and/or point FERROCAST_BIN (or CARGO_TARGET_DIR) at it; this script does not build"

IFS=', ' read -r -a parts <<<"$part_list"
for p in "${parts[@]}"; do
    [[ $p =~ ^[0-9]+$ ]] || die "PART_MS: '$p' is not a number of milliseconds"
done
geometry=$(python3 "$root/benches/g2g/clock_sender.py" --geometry --size "$size") || die "SIZE=$size"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferrocast-g2g.XXXXXX")
pids=()
# Stop one process started with setsid (its pid is its process group):
# SIGTERM, up to 5 s, then SIGKILL to the whole group.
stop_group() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        stop_group "$pid"
    done
    if [[ -n $out_dir && -d $tmp ]]; then
        mkdir -p "$out_dir"
        (cd "$tmp" && find . -name '*.json' -o -name '*.log' -o -name '*.out' -o -name '*.toml' |
            grep -v '/data/\|/hls/' | tar -cf - -T -) | (cd "$out_dir" && tar -xf -) || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait (up to $2 s) until the playlist at $1 lists a segment or part.
wait_for_media() {
    local url=$1 deadline=$((SECONDS + $2))
    until curl -fsS "$url" 2>/dev/null | grep -qE '^#EXTINF|^#EXT-X-PART:'; do
        ((SECONDS < deadline)) || { echo "glass_to_glass.sh: no media at $url" >&2; return 1; }
        sleep 0.2
    done
}

# A free UDP port on loopback (bound, then released for ffmpeg to take).
free_udp_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait (up to 10 s) until someone listens on UDP port $1 of 127.0.0.1.
wait_for_udp() {
    local hex deadline=$((SECONDS + 10))
    hex=$(printf '0100007F:%04X' "$1")
    until grep -q " $hex " /proc/net/udp; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# The sender into ffmpeg output URL $2, in case directory $1.
sender=
start_sender() {
    setsid python3 "$root/benches/g2g/clock_sender.py" --size "$size" --fps "$fps" \
        --content "$content" --stats "$1/sender.json" -- \
        -pes_payload_size "$pes_payload" -f mpegts "$2" </dev/null >"$1/sender.log" 2>&1 &
    sender=$!
    pids+=("$sender")
}

play_args=(--geometry "$geometry" --start-timeout "$start_timeout")
[[ -n $hls_config ]] && play_args+=(--hls-config "$hls_config")

# Give the stream JOIN_AFTER_S from its first media, then play $1 into $2.
play() {
    local since=$(($(date +%s) - media_at))
    if ((since < join_s)); then sleep $((join_s - since)); fi
    (cd "$root/tests/browser" && node g2g.mjs "$1" "$play_s" "${play_args[@]}") >"$2"
}

forget_pid() {
    local keep=() pid
    for pid in "${pids[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    pids=("${keep[@]}")
}

stop_case() {
    local pid
    for pid in "$@"; do
        stop_group "$pid"
        forget_pid "$pid"
    done
}

# ---- Ferrocast: SRT in, LL-HLS out, [hls] part_target_ms = $1 --------------
run_ferrocast() {
    local part=$1 dir=$2 ready srt http server
    mkdir -p "$dir/data"
    printf '[ingest]\nsrt_latency_ms = %d\n\n[hls]\npart_target_ms = %d\n' "$srt_latency" "$part" \
        >"$dir/ferrocast.toml"
    [[ -z $hold_back_parts ]] || printf 'part_hold_back_parts = %d\n' "$hold_back_parts" >>"$dir/ferrocast.toml"
    [[ -z $audio ]] || printf 'audio = "%s"\n' "$audio" >>"$dir/ferrocast.toml"
    # FERROCAST_* variables are configuration to ferrocast: FERROCAST_BIN
    # would be an unknown key.
    env -u FERROCAST_BIN setsid "$ferrocast_bin" up --config "$dir/ferrocast.toml" --srt-listen 127.0.0.1:0 \
        --http-listen 127.0.0.1:0 --data-dir "$dir/data" --ladder off \
        </dev/null >"$dir/ferrocast.out" 2>"$dir/ferrocast.log" &
    server=$!
    pids+=("$server")
    local deadline=$((SECONDS + 60))
    until grep -q '^ferrocast ready' "$dir/ferrocast.out"; do
        ((SECONDS < deadline)) && kill -0 "$server" 2>/dev/null ||
            { echo "ferrocast did not start:" >&2; tail -20 "$dir/ferrocast.log" >&2; return 1; }
        sleep 0.1
    done
    ready=$(grep -m1 '^ferrocast ready' "$dir/ferrocast.out")
    srt=$(sed -E 's/.*srt=([^ ]+).*/\1/' <<<"$ready")
    http=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$ready")
    start_sender "$dir" "srt://$srt?streamid=publish:live/g2g&pkt_size=1316&latency=$((srt_latency * 1000))"
    wait_for_media "http://$http/live/g2g/stream.m3u8" 30 ||
        { tail -5 "$dir/sender.log" "$dir/ferrocast.log" >&2; stop_case "$sender" "$server"; return 1; }
    media_at=$(date +%s)
    log "hls.js plays Ferrocast (${part} ms parts) for ${play_s}s"
    play "http://$http/live/g2g/index.m3u8" "$dir/play.json" || true
    stop_case "$sender" "$server"
}

# ---- Baseline: SRT into ffmpeg's HLS muxer (fMP4, 1 s segments), static files
run_baseline() {
    local dir=$1 port srt_port http_srv remux
    mkdir -p "$dir/hls"
    # python3 -m http.server plus CORS (the page's origin is not the
    # server's) and no caching; binds a free port and says which.
    setsid python3 -u - "$dir/hls" >"$dir/http.port" 2>"$dir/http.log" <<'PY' &
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
PY
    http_srv=$!
    pids+=("$http_srv")
    local deadline=$((SECONDS + 10))
    until [[ -s $dir/http.port ]]; do
        ((SECONDS < deadline)) || { echo "http server did not start:" >&2; cat "$dir/http.log" >&2; return 1; }
        sleep 0.1
    done
    port=$(head -n1 "$dir/http.port")
    local tries
    for tries in 1 2 3; do
        srt_port=$(free_udp_port)
        setsid ffmpeg -hide_banner -loglevel error -fflags nobuffer -probesize 500000 -analyzeduration 1000000 \
            -i "srt://127.0.0.1:$srt_port?mode=listener&latency=$((srt_latency * 1000))" \
            -map 0 -c copy -bsf:a aac_adtstoasc -f hls -hls_time 1 -hls_list_size 6 -hls_segment_type fmp4 \
            -hls_flags independent_segments+delete_segments+temp_file \
            "$dir/hls/stream.m3u8" </dev/null >"$dir/remux.log" 2>&1 &
        remux=$!
        pids+=("$remux")
        wait_for_udp "$srt_port" && break
        stop_case "$remux"
        remux=
    done
    [[ -n $remux ]] || { echo "the ffmpeg SRT listener did not start:" >&2; cat "$dir/remux.log" >&2; return 1; }
    start_sender "$dir" "srt://127.0.0.1:$srt_port?pkt_size=1316&latency=$((srt_latency * 1000))"
    wait_for_media "http://127.0.0.1:$port/stream.m3u8" 30 ||
        { tail -5 "$dir/sender.log" "$dir/remux.log" >&2; stop_case "$sender" "$remux" "$http_srv"; return 1; }
    media_at=$(date +%s)
    log "hls.js plays the ffmpeg HLS baseline for ${play_s}s"
    play "http://127.0.0.1:$port/stream.m3u8" "$dir/play.json" || true
    stop_case "$sender" "$remux" "$http_srv"
}

log "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); ferrocast: $ferrocast_bin"
log "$size ${fps} fps ($content), ${play_s}s per playback, $runs runs; parts: ${parts[*]} ms; baseline: $baseline"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cases=()
for ((run = 1; run <= runs; run++)); do
    for part in "${parts[@]}"; do
        name=ferrocast-$part
        log "run $run/$runs: $name"
        mkdir -p "$tmp/run$run/$name"
        run_ferrocast "$part" "$tmp/run$run/$name" || log "run $run: $name failed"
        cases+=("$name=$tmp/run$run/$name")
    done
    if [[ $baseline == 1 ]]; then
        log "run $run/$runs: baseline"
        mkdir -p "$tmp/run$run/ffmpeg-hls"
        run_baseline "$tmp/run$run/ffmpeg-hls" || log "run $run: baseline failed"
        cases+=("ffmpeg-hls=$tmp/run$run/ffmpeg-hls")
    fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Report -------------------------------------------------------------------
report_config=${hls_config:-"{}"}
python3 - "$size" "$fps" "$play_s" "$content" "$report_config" "$load_before" "$load_after" \
    "$(nproc)" "$ferrocast_bin" "${cases[@]}" <<'PY'
import json, math, os, statistics, sys

size, fps, play_s, content, hls_config, load_before, load_after, ncpu, binary = sys.argv[1:10]
fps, play_s = int(fps), float(play_s)

def pct(xs, p):
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)] if xs else None

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

servers = {}
for arg in sys.argv[10:]:
    name, _, d = arg.partition("=")
    play, sender = load(os.path.join(d, "play.json")), load(os.path.join(d, "sender.json"))
    run = {"ok": False}
    if play:
        lat = sorted(s[1] for s in play["samples"])
        secs = play["measuredMs"] / 1000
        run = {
            "ok": bool(play["playing"] and not play["fatal"] and lat),
            "playing": play["playing"], "fatal": play["fatal"],
            "measured_s": secs, "frames_presented": play["frames"],
            "frames_measured": len(lat), "frames_expected": round(fps * secs),
            "decode_failures": play["decodeFailures"],
            "sequence_gaps": play["sequenceGaps"], "presented_gaps": play["presentedGaps"],
            "dropped_frames": play["droppedFrames"],
            "p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
            "min": lat[0] if lat else None, "max": lat[-1] if lat else None,
            "mean": round(statistics.fmean(lat)) if lat else None,
            "stalls": play["stalls"], "stalled_ms": play["stalledMs"],
            "bufferStalledError": play["bufferStalledError"],
            "bufferSeekOverHole": play["bufferSeekOverHole"],
            "hls_errors": play["errors"],
            "hls_latency_p50": pct(sorted(play["hlsLatency"]), 50),
            "first_playing_ms": play["firstPlayingMs"],
            "decode_cost_ms": play["decodeCostMs"],
            "_lat": lat,
        }
    run["sender"] = sender
    servers.setdefault(name, []).append(run)

print()
print(f"Glass-to-glass latency by the clock in the picture (ms): {size} {fps} fps ({content}), "
      f"{play_s:g} s per playback, hls config {hls_config}; {ncpu} CPUs, load {load_before} -> {load_after}")
head = (f"{'server':14} {'run':>3} {'p50':>6} {'p90':>6} {'p99':>6} {'min':>6} {'max':>6} "
        f"{'frames':>12} {'undecoded':>9} {'gaps':>5} {'stalls':>6} {'stallErr':>8} {'seekHole':>8} "
        f"{'hls.latency':>11} {'sender fps':>10}")
print(head)
summary = {}
for name, rs in servers.items():
    for i, r in enumerate(rs, 1):
        s = r.get("sender") or {}
        if not r.get("playing"):
            print(f"{name:14} {i:>3}  did not play (fatal={r.get('fatal')})")
            continue
        frames = f"{r['frames_measured']}/{r['frames_expected']}"
        undecoded = sum(r["decode_failures"].values())
        print(f"{name:14} {i:>3} {r['p50']!s:>6} {r['p90']!s:>6} {r['p99']!s:>6} {r['min']!s:>6} {r['max']!s:>6} "
              f"{frames:>12} {undecoded:>9} {r['sequence_gaps']:>5} {r['stalls']:>6} "
              f"{r['bufferStalledError']:>8} {r['bufferSeekOverHole']:>8} {r['hls_latency_p50']!s:>11} "
              f"{s.get('achieved_fps', '-')!s:>10}")
    pooled = sorted(x for r in rs for x in r.get("_lat", []))
    ok_runs = [r for r in rs if r.get("ok")]
    summary[name] = {
        "runs": len(rs), "runs_ok": len(ok_runs),
        "p50": pct(pooled, 50), "p90": pct(pooled, 90), "p99": pct(pooled, 99),
        "run_p50s": [r["p50"] for r in ok_runs],
        "frames_measured": sum(r["frames_measured"] for r in ok_runs),
        "frames_expected": sum(r["frames_expected"] for r in ok_runs),
        "decode_failures": sum(sum(r["decode_failures"].values()) for r in ok_runs),
        "stalls": sum(r["stalls"] for r in ok_runs),
        "bufferStalledError": sum(r["bufferStalledError"] for r in ok_runs),
        "bufferSeekOverHole": sum(r["bufferSeekOverHole"] for r in ok_runs),
        "sender_late_frames": sum((r.get("sender") or {}).get("late_frames", 0) for r in rs),
    }
print()
print(f"{'all runs':14} {'p50':>6} {'p90':>6} {'p99':>6} {'run p50s':>20} {'frames':>14} "
      f"{'undecoded':>9} {'stalls':>6} {'stallErr':>8} {'seekHole':>8}")
for name, s in summary.items():
    p50s = "/".join(str(x) for x in s["run_p50s"])
    frames = f"{s['frames_measured']}/{s['frames_expected']}"
    print(f"{name:14} {s['p50']!s:>6} {s['p90']!s:>6} {s['p99']!s:>6} {p50s:>20} {frames:>14} "
          f"{s['decode_failures']:>9} {s['stalls']:>6} {s['bufferStalledError']:>8} {s['bufferSeekOverHole']:>8}")
for rs in servers.values():
    for r in rs:
        r.pop("_lat", None)
ok = all(s["runs_ok"] == s["runs"] for s in summary.values()) and bool(summary)
print(json.dumps({"bench": "glass_to_glass", "ok": ok, "size": size, "fps": fps, "content": content,
                  "play_seconds": play_s, "hls_config": json.loads(hls_config), "nproc": int(ncpu),
                  "load_before": load_before, "load_after": load_after, "ferrocast_bin": binary,
                  "summary": summary, "runs": servers}))
sys.exit(0 if ok else 1)
PY
