#!/usr/bin/env bash
# Latency benchmark: Ferrocast LL-HLS against ffmpeg's own HLS muxer, both
# played by hls.js in headless Chromium, plus the in-process ingest_to_part.
#
# usage: benches/latency.sh
#
# Environment (all optional):
#   PLAY_SECONDS   how long hls.js plays each stream (default 30; stats use the last 20 s)
#   HLS_CONFIG     JSON merged into the Hls config for both players,
#                  e.g. '{"maxLiveSyncPlaybackRate":1.5}' (default: hls.js defaults)
#   SIZE           encoded picture size (default 1280x720)
#   X264_TUNE      x264 -tune for both feeds (default zerolatency; empty for none)
#   PES_PAYLOAD_SIZE  ffmpeg mpegts -pes_payload_size for the SRT push (default
#                  ffmpeg's 2930, which batches about 0.37 s of 64 kb/s AAC into
#                  one PES; 0 sends one audio frame per PES, as hardware
#                  contribution encoders do)
#   PART_SECONDS   media length for ingest_to_part (default 30)
#   SKIP_INPROCESS=1  skip ingest_to_part
#
# Every process started here is killed on exit. See docs/BENCHMARKS.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
play_s=${PLAY_SECONDS:-30}
hls_config=${HLS_CONFIG:-}
size=${SIZE:-1280x720}
tune=${X264_TUNE-zerolatency}
part_s=${PART_SECONDS:-30}
pes_payload=${PES_PAYLOAD_SIZE:-2930}
# The feed outlasts start-up (waiting for the first segment) plus playback.
feed_s=$((play_s + 30))
stats_from_s=$((play_s > 20 ? play_s - 20 : 0))

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferrocast-latency.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

for tool in cargo ffmpeg node python3 curl; do
    command -v "$tool" >/dev/null || { echo "latency.sh: $tool is missing" >&2; exit 1; }
done
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || { echo "latency.sh: Chromium is missing (apt-get install chromium)" >&2; exit 1; }
if [[ ! -d $root/tests/browser/node_modules/hls.js ]]; then
    log "installing the browser test dependencies (npm ci)"
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund)
fi

log "building (release)"
(cd "$root" && cargo build --release --quiet -p ferrocast --bin ferrocast -p ferrocast-benches --bin ingest_to_part)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ferrocast_bin=$target_dir/release/ferrocast
part_bin=$target_dir/release/ingest_to_part

tune_args=()
[[ -n $tune ]] && tune_args=(-tune "$tune")
# The same source and encoder settings for both servers: 25 fps, 1 s GOP.
source_args=(-hide_banner -loglevel error -re
    -f lavfi -i "testsrc2=size=$size:rate=25" -f lavfi -i sine=frequency=440:sample_rate=48000
    -c:v libx264 -preset veryfast "${tune_args[@]}" -g 25 -pix_fmt yuv420p
    -c:a aac -b:a 64k -t "$feed_s")

play_args=()
[[ -n $hls_config ]] && play_args=(--hls-config "$hls_config")

# Wait (up to $2 s) until the playlist at $1 lists a segment or part.
wait_for_media() {
    local url=$1 deadline=$((SECONDS + $2))
    until curl -fsS "$url" 2>/dev/null | grep -qE '^#EXTINF|^#EXT-X-PART:'; do
        ((SECONDS < deadline)) || { echo "latency.sh: no media at $url" >&2; return 1; }
        sleep 0.2
    done
}

play() {
    (cd "$root/tests/browser" && node play.mjs "$1" "$play_s" "${play_args[@]}")
}

# ---- Ferrocast: SRT in, LL-HLS out --------------------------------------
log "ferrocast up"
mkdir -p "$tmp/ferrocast"
"$ferrocast_bin" up --srt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$tmp/ferrocast" \
    >"$tmp/ferrocast.out" 2>"$tmp/ferrocast.log" &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q '^ferrocast ready' "$tmp/ferrocast.out"; do
    ((SECONDS < deadline)) || { echo "latency.sh: ferrocast did not start:" >&2; cat "$tmp/ferrocast.log" >&2; exit 1; }
    sleep 0.1
done
ready=$(grep -m1 '^ferrocast ready' "$tmp/ferrocast.out")
srt=$(sed -E 's/.*srt=([^ ]+).*/\1/' <<<"$ready")
http=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$ready")

log "pushing ${feed_s}s over SRT to $srt"
ffmpeg "${source_args[@]}" -pes_payload_size "$pes_payload" -f mpegts "srt://$srt?streamid=publish:live/bench&pkt_size=1316" \
    </dev/null >"$tmp/push.log" 2>&1 &
push_pid=$!
pids+=("$push_pid")
wait_for_media "http://$http/live/bench/stream.m3u8" 30
log "hls.js plays Ferrocast for ${play_s}s"
play "http://$http/live/bench/index.m3u8" >"$tmp/ferrocast-play.json"
kill "$push_pid" 2>/dev/null || true

# ---- Baseline: ffmpeg's HLS muxer (fMP4, 1 s segments) over http.server --
log "baseline: ffmpeg -f hls into a directory served by Python's http.server"
mkdir -p "$tmp/hls"
# python3 -m http.server, plus the CORS header the player's page needs (its
# origin is not the server's) and no caching; binds a free port and says which.
python3 -u - "$tmp/hls" >"$tmp/http.port" 2>"$tmp/http.log" <<'PY' &
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()
server = http.server.ThreadingHTTPServer(
    ("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
PY
pids+=($!)
deadline=$((SECONDS + 10))
until [[ -s $tmp/http.port ]]; do
    ((SECONDS < deadline)) || { echo "latency.sh: http server did not start:" >&2; cat "$tmp/http.log" >&2; exit 1; }
    sleep 0.1
done
port=$(head -n1 "$tmp/http.port")
ffmpeg "${source_args[@]}" -f hls -hls_time 1 -hls_list_size 6 -hls_segment_type fmp4 \
    -hls_flags independent_segments+delete_segments+temp_file+program_date_time \
    "$tmp/hls/stream.m3u8" </dev/null >"$tmp/hls.log" 2>&1 &
hls_pid=$!
pids+=("$hls_pid")
wait_for_media "http://127.0.0.1:$port/stream.m3u8" 30
log "hls.js plays the baseline for ${play_s}s"
play "http://127.0.0.1:$port/stream.m3u8" >"$tmp/baseline-play.json"
kill "$hls_pid" 2>/dev/null || true

# ---- In process: ingest_to_part -----------------------------------------
part_json=null
if [[ ${SKIP_INPROCESS:-0} != 1 ]]; then
    log "ingest_to_part (${part_s}s of 720p30)"
    "$part_bin" --seconds "$part_s" | tee "$tmp/part.out" >&2
    part_json=$(tail -n1 "$tmp/part.out")
fi

# ---- Report ---------------------------------------------------------------
report_config=${hls_config:-"{}"}
python3 - "$tmp/ferrocast-play.json" "$tmp/baseline-play.json" "$stats_from_s" "$part_json" \
    "$size" "${tune:-none}" "$report_config" <<'PY'
import json, statistics, sys

ferro_path, base_path, from_s, part, size, tune, hls_config = sys.argv[1:8]
from_ms = float(from_s) * 1000

def summarise(path):
    r = json.load(open(path))
    out = {"playing": r.get("playing"), "stalls": r.get("stalls"), "fatal": r.get("fatal"),
           "first_playing_ms": r.get("firstPlayingMs")}
    late = [s for s in r.get("samples", []) if s["t"] >= from_ms]
    for key in ("latency", "pdtLatency"):
        xs = sorted(s[key] for s in late if isinstance(s.get(key), (int, float)) and s[key] > 0)
        if xs:
            out[key] = {"n": len(xs), "mean": round(statistics.fmean(xs), 3),
                        "median": round(statistics.median(xs), 3),
                        "p90": round(xs[min(len(xs) - 1, -(-len(xs) * 9 // 10) - 1)], 3)}
        else:
            out[key] = None
    return out

ferro, base = summarise(ferro_path), summarise(base_path)
print()
print(f"hls.js latency over the last {20 if from_ms else 'whole'} s of playback "
      f"(seconds; {size} 25 fps, -tune {tune}, hls config {hls_config})")
print(f"{'':34} {'mean':>7} {'median':>7} {'p90':>7}   {'PDT median':>10} {'stalls':>6}")
for name, s in (("Ferrocast LL-HLS (200 ms parts)", ferro), ("baseline: ffmpeg HLS, 1 s fMP4", base)):
    lat, pdt = s["latency"] or {}, s["pdtLatency"] or {}
    print(f"{name:34} {lat.get('mean', '-'):>7} {lat.get('median', '-'):>7} {lat.get('p90', '-'):>7}"
          f"   {pdt.get('median', '-'):>10} {s['stalls']!s:>6}"
          + ("" if s["playing"] and not s["fatal"] else f"  (playing={s['playing']}, fatal={s['fatal']})"))
ok = all(s["playing"] and not s["fatal"] for s in (ferro, base))
print(json.dumps({"bench": "latency", "ok": ok, "size": size, "tune": tune, "hls_config": json.loads(hls_config),
                  "ferrocast": ferro, "baseline_ffmpeg_hls": base,
                  "ingest_to_part": json.loads(part)}))
sys.exit(0 if ok else 1)
PY
