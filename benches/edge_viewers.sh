#!/usr/bin/env bash
# Edge viewers per core: N simulated LL-HLS viewers (benches/src/bin/
# edge_viewers.rs, hls.js-like: blocking playlist reload + part, one
# connection each, HTTP/1.1 or HTTP/2 over TLS or HTTP/3) against `ferrocast up` with an
# [edge] section, the server pinned to one core and the generator (and the
# ffmpeg publisher) to the other, so that the server's CPU is measured
# alone. Baseline in the same run: nginx on the same core serving the same
# playlist and part bytes as static files to the same viewers, one playlist
# and one part per part duration each, over HTTP/1.1 and HTTP/2 (Debian 12's
# nginx 1.22 has no HTTP/3; an nginx built with http_v3_module is used for
# h3 when it is the one on PATH).
#
# usage: benches/edge_viewers.sh
#
# Environment (all optional):
#   VIEWERS     viewer counts, one step each (default 100,300,1000,2000)
#   WINDOW_S    measuring window per step, seconds (default 20)
#   RAMP_S      seconds over which a step's viewers start (default 5)
#   WARMUP_S    seconds after the ramp before the window (default 3)
#   IDLE_S      server alone with no viewers first, seconds (default 10)
#   SERVER_CPU  core of the server under test (default 0)
#   LOAD_CPU    core of the generator and ffmpeg (default 1)
#   BASELINE    1: also run nginx (default 1); 0: edge only
#   PROTOCOLS   viewer protocols, in order (default h1,h2,h3)
#   SIZE        pushed picture size (default 1280x720)
#   PUSH        file: encode SOURCE_S seconds once before the run, then push
#               that file in a loop with -c copy (default; the encoder does
#               not compete with the generator); live: encode while pushing
#   SOURCE_S    length of the pre-encoded file (default 60)
#   AUDIO       [hls] audio of the server (default muxed: every viewer
#               follows one media playlist that carries video and audio,
#               as the generator does; with separate, the server's
#               default, a real player also follows the audio rendition,
#               which the generator does not)
#
# Every process started here is killed on exit. See docs/BENCHMARKS.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
viewers=${VIEWERS:-100,300,1000,2000}
window_s=${WINDOW_S:-20}
ramp_s=${RAMP_S:-5}
warmup_s=${WARMUP_S:-3}
idle_s=${IDLE_S:-10}
server_cpu=${SERVER_CPU:-0}
load_cpu=${LOAD_CPU:-1}
baseline=${BASELINE:-1}
size=${SIZE:-1280x720}
protocols=${PROTOCOLS:-h1,h2,h3}
IFS=, read -r -a protocol_list <<<"$protocols"
for p in "${protocol_list[@]}"; do
    [[ $p == h1 || $p == h2 || $p == h3 ]] || { echo "edge_viewers.sh: PROTOCOLS takes h1, h2, h3, not $p" >&2; exit 1; }
done
wants_h3=0
[[ ,$protocols, == *,h3,* ]] && wants_h3=1
push=${PUSH:-file}
source_s=${SOURCE_S:-60}
audio=${AUDIO:-muxed}
[[ $audio == muxed || $audio == separate ]] || { echo "edge_viewers.sh: AUDIO is muxed or separate, not $audio" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferrocast-edge-viewers.XXXXXX")
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
die() { echo "edge_viewers.sh: $*" >&2; exit 1; }

# install_debian_packages
# shellcheck source=../scripts/deps.sh
source "$root/scripts/deps.sh"

if ((baseline)); then
    command -v nginx >/dev/null || install_debian_packages nginx
fi
[[ $push == file || $push == live ]] || die "PUSH is file or live, not $push"
for tool in cargo ffmpeg openssl curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
((baseline == 0)) || command -v nginx >/dev/null || die "nginx is missing"
(($(nproc) >= 2)) || die "needs two cores (server on one, load on the other); nproc is $(nproc)"
max_viewers=$(tr ',' '\n' <<<"$viewers" | sort -n | tail -n1)
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= max_viewers + 1000)) || die "ulimit -n is $(ulimit -n); $((max_viewers + 1000)) needed"

log "building (release)"
(cd "$root" && cargo build --release --quiet -p ferrocast --bin ferrocast -p ferrocast-benches --bin edge_viewers)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ferrocast_bin=$target_dir/release/ferrocast
viewers_bin=$target_dir/release/edge_viewers

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rand_secret() { openssl rand -hex 24; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -addext 'basicConstraints=critical,CA:FALSE' -addext 'extendedKeyUsage=serverAuth' \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
jwt_secret=$(rand_secret)
edge_secret=$(rand_secret)
link_secret=$(rand_secret)

encode=(-c:v libx264 -preset veryfast -tune zerolatency -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k)
if [[ $push == file ]]; then
    log "encoding $source_s s of $size 25 fps once (x264 veryfast zerolatency, keyframe every second)"
    ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$size:rate=25" \
        -f lavfi -i sine=frequency=440:sample_rate=48000 "${encode[@]}" -t "$source_s" \
        -pes_payload_size 0 -f mpegts "$tmp/source.ts" </dev/null || die "ffmpeg could not encode the source"
fi

# ---- Ferrocast with the edge, on SERVER_CPU -----------------------------------
cat >"$tmp/ferrocast.toml" <<EOF
[hls]
audio = "$audio"

[edge]
https_listen = "127.0.0.1:0"
tls_cert = "$tmp/cert.pem"
tls_key = "$tmp/key.pem"
http3 = $( ((wants_h3)) && echo true || echo false)

[edge.jwt]
audience = "ferrocast-bench"

[[edge.jwt.keys]]
kid = "hs"
algorithm = "HS256"
secret = "$jwt_secret"

[edge.token]
keys = [{ kid = 1, secret = "$edge_secret" }]

[edge.limits]
# Every simulated viewer comes from 127.0.0.1: the per-IP limit would
# answer them 429. The per-token limit stays on (each viewer has its own
# JWT and session, about 10 requests/s against 50/s).
per_ip = { enabled = false }

[edge.connections]
# Likewise the per-client connection cap (256 by default: viewers behind
# one NAT): here every viewer is one client address.
max_connections = $((max_viewers + 1000))
max_connections_per_client = $((max_viewers + 1000))
EOF

log "ferrocast up (edge on, --ladder off) on CPU $server_cpu"
mkdir -p "$tmp/data"
taskset -c "$server_cpu" env $(env | sed -n 's/^\(FERROCAST_[^=]*\)=.*/-u \1/p') FERROCAST_LOG=warn \
    "$ferrocast_bin" up --srt-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$tmp/data" \
    --config "$tmp/ferrocast.toml" --ladder off >"$tmp/ferrocast.out" 2>"$tmp/ferrocast.log" &
ferrocast_pid=$!
pids+=("$ferrocast_pid")
deadline=$((SECONDS + 30))
until grep -qs '^ferrocast ready' "$tmp/ferrocast.out"; do
    kill -0 "$ferrocast_pid" 2>/dev/null || { cat "$tmp/ferrocast.log" >&2; die "ferrocast exited"; }
    ((SECONDS < deadline)) || { cat "$tmp/ferrocast.log" >&2; die "ferrocast did not start"; }
    sleep 0.1
done
ready=$(grep -m1 '^ferrocast ready' "$tmp/ferrocast.out")
srt=$(sed -E 's/.*srt=([^ ]+).*/\1/' <<<"$ready")
https=$(sed -E 's/.*https=([^ ]+).*/\1/' <<<"$ready")
[[ $https == 127.0.0.1:* ]] || die "no https= on the ready line: $ready"

if [[ $push == live ]]; then
    log "pushing $size 25 fps (x264 zerolatency, -pes_payload_size 0) over SRT to $srt, encoding live on CPU $load_cpu"
    input=(-re -f lavfi -i "testsrc2=size=$size:rate=25" -f lavfi -i sine=frequency=440:sample_rate=48000
        "${encode[@]}" -t 3600)
else
    log "pushing $tmp/source.ts ($size 25 fps, x264 zerolatency) in a loop, -c copy, over SRT to $srt, on CPU $load_cpu"
    input=(-re -stream_loop -1 -i "$tmp/source.ts" -c copy)
fi
taskset -c "$load_cpu" ffmpeg -hide_banner -loglevel error "${input[@]}" \
    -pes_payload_size 0 -f mpegts "srt://$srt?streamid=publish:live/bench&pkt_size=1316" \
    </dev/null >"$tmp/push.log" 2>&1 &
push_pid=$!
pids+=("$push_pid")

# ---- One viewer JWT per simulated viewer ------------------------------------------
python3 - "$jwt_secret" "$max_viewers" >"$tmp/jwts.txt" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret, n = sys.argv[1].encode(), int(sys.argv[2])
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "hs"}).encode())
exp = int(time.time()) + 7200
for i in range(n):
    body = b64(json.dumps({"sub": f"viewer-{i}", "aud": "ferrocast-bench", "exp": exp,
                           "streams": ["bench"]}).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    print(f"{head}.{body}.{sig}")
PY
jwt=$(head -n1 "$tmp/jwts.txt")
base=https://$https
fetch() { curl -fsS --cacert "$tmp/cert.pem" "$@"; }

deadline=$((SECONDS + 30))
until fetch -H "Authorization: Bearer $jwt" "$base/live/bench/index.m3u8" >"$tmp/index.m3u8" 2>/dev/null; do
    ((SECONDS < deadline)) || die "no multivariant playlist from the edge"
    sleep 0.2
done
media_uri=$(grep -m1 -v '^#' "$tmp/index.m3u8") || die "no media playlist URI in index.m3u8"
media_url=$base/live/bench/$media_uri
until (($(fetch "$media_url" 2>/dev/null | tee "$tmp/media.m3u8" | grep -c '^#EXTINF') >= 3)); do
    ((SECONDS < deadline + 30)) || die "the media playlist never listed 3 segments"
    sleep 0.2
done
# PART-TARGET (ms), and the parts of the last finished segment (for nginx).
read -r part_ms part_uris < <(python3 - "$tmp/media.m3u8" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
target = float(re.search(r"#EXT-X-PART-INF:PART-TARGET=([\d.]+)", text).group(1))
parts, finished = [], []
for line in text.splitlines():
    if line.startswith("#EXT-X-PART:"):
        parts.append(re.search(r'URI="([^"]+)"', line).group(1))
    elif line and not line.startswith("#"):
        finished, parts = (parts or finished), []
print(round(target * 1000), ",".join(finished) or "None")
PY
)
[[ $part_uris != None ]] || die "no finished segment with parts in the media playlist"
# The baseline's files, fetched now: a part leaves the origin's window a
# few segments after it is written.
mkdir -p "$tmp/www/live/bench" "$tmp/nginx"
cp "$tmp/media.m3u8" "$tmp/www/live/bench/stream.m3u8"
part_files=()
IFS=, read -r -a uris <<<"$part_uris"
for uri in "${uris[@]}"; do
    file=${uri%%\?*}
    fetch -o "$tmp/www/live/bench/$file" "$base/live/bench/$uri" || die "the edge did not serve $file"
    part_files+=("$file")
done
log "edge up: PART-TARGET $part_ms ms, media playlist $(wc -c <"$tmp/media.m3u8") B, parts of one segment: $(cd "$tmp/www/live/bench" && du -cb "${part_files[@]}" | tail -n1 | cut -f1) B"

results=$tmp/results.jsonl
: >"$results"
common=(--cert "$tmp/cert.pem" --viewers "$viewers" --server-cpu "$server_cpu" --load-cpu "$load_cpu"
    --ramp-s "$ramp_s" --warmup-s "$warmup_s" --window-s "$window_s" --idle-s "$idle_s")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- The edge ---------------------------------------------------------------------------
for protocol in "${protocol_list[@]}"; do
    log "edge over $protocol: viewers $viewers, window $window_s s"
    taskset -c "$load_cpu" "$viewers_bin" --mode edge --protocol "$protocol" --addr "$https" --jwts "$tmp/jwts.txt" \
        --server-pid "$ferrocast_pid" --period-ms "$part_ms" "${common[@]}" \
        >"$tmp/edge-$protocol.out" 2> >(tee "$tmp/edge-$protocol.err" >&2) ||
        { cat "$tmp/edge-$protocol.out" >&2; die "edge_viewers (edge, $protocol) failed"; }
    tail -n1 "$tmp/edge-$protocol.out" >>"$results"
done

# ---- Baseline: nginx on the same core, the same bytes as static files ----------------
if ((baseline)); then
    chmod -R a+rX "$tmp/www"
    chmod a+x "$tmp"
    secure_link=0
    nginx -V 2>&1 | grep -q -- '--with-http_secure_link_module' && secure_link=1
    expires=$(($(date +%s) + 7200))
    if ((secure_link)); then
        link_query() { # md5 of "$expires$uri $secret", as secure_link_md5 below
            local md5
            md5=$(printf '%s' "$expires$1 $link_secret" | openssl md5 -binary | openssl base64 | tr '+/' '-_' | tr -d '=')
            printf '?md5=%s&expires=%s' "$md5" "$expires"
        }
        link_conf="secure_link \$arg_md5,\$arg_expires;
            secure_link_md5 \"\$secure_link_expires\$uri $link_secret\";
            if (\$secure_link = \"\") { return 403; }
            if (\$secure_link = \"0\") { return 410; }"
    else
        link_query() { printf ''; }
        link_conf=""
    fi
    {
        echo "/live/bench/stream.m3u8$(link_query /live/bench/stream.m3u8)"
        for file in "${part_files[@]}"; do
            echo "/live/bench/$file$(link_query "/live/bench/$file")"
        done
    } >"$tmp/static_paths.txt"
    nginx_port=$(free_port)
    nginx_h3=0
    nginx -V 2>&1 | grep -q -- '--with-http_v3_module' && nginx_h3=1
    # nginx 1.25.1 replaced `listen ... http2` with `http2 on`; 1.22 (Debian
    # 12) knows only the former.
    if nginx -V 2>&1 | grep -qE 'nginx/1\.(2[5-9]|[3-9][0-9])'; then
        listen_tcp="listen 127.0.0.1:$nginx_port ssl; http2 on;"
    else
        listen_tcp="listen 127.0.0.1:$nginx_port ssl http2;"
    fi
    listen_quic=""
    ((nginx_h3)) && listen_quic="listen 127.0.0.1:$nginx_port quic reuseport;"

    cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections $((max_viewers + 1000)); }
worker_rlimit_nofile $((max_viewers + 2000));
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {
        $listen_tcp
        $listen_quic
        ssl_certificate $tmp/cert.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $tmp/www;
        location /live/ {
            $link_conf
        }
    }
}
EOF
    log "nginx on 127.0.0.1:$nginx_port, CPU $server_cpu, 1 worker (secure_link: $secure_link), ${#part_files[@]} part files"
    taskset -c "$server_cpu" nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    deadline=$((SECONDS + 10))
    until fetch -o "$tmp/nginx-part.m4s" "https://127.0.0.1:$nginx_port$(sed -n 2p "$tmp/static_paths.txt")" 2>/dev/null; do
        ((SECONDS < deadline)) || { cat "$tmp/nginx/error.log" >&2; die "nginx did not start"; }
        sleep 0.1
    done
    cmp -s "$tmp/www/live/bench/${part_files[0]}" "$tmp/nginx-part.m4s" || die "nginx served different part bytes"
    nginx_pids=$(echo "$nginx_pid" $(pgrep -P "$nginx_pid") | tr ' ' ,)
    for protocol in "${protocol_list[@]}"; do
        if [[ $protocol == h3 ]] && ((nginx_h3 == 0)); then
            log "nginx: no HTTP/3 in this build ($(nginx -v 2>&1)); h3 has no baseline"
            continue
        fi
        log "nginx over $protocol: viewers $viewers, one playlist + one part every $part_ms ms each"
        taskset -c "$load_cpu" "$viewers_bin" --mode static --protocol "$protocol" --addr "127.0.0.1:$nginx_port" \
            --static-paths "$tmp/static_paths.txt" --server-pid "$nginx_pids" --period-ms "$part_ms" "${common[@]}" \
            >"$tmp/nginx-$protocol.out" 2> >(tee "$tmp/nginx-$protocol.err" >&2) ||
            { cat "$tmp/nginx-$protocol.out" >&2; die "edge_viewers (nginx, $protocol) failed"; }
        tail -n1 "$tmp/nginx-$protocol.out" >>"$results"
    done
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Report -------------------------------------------------------------------------------
python3 - "$results" "$(nproc)" "$load_before" "$load_after" "$size" "$part_ms" "$push" <<'PY'
import json, sys
res, nproc, load0, load1, size, part_ms, push = sys.argv[1:8]
runs = [json.loads(l) for l in open(res)]
lat = lambda s, q: f"{s['lag_ms'][q]:>7.0f}" if s["mode"] == "edge" else f"{'-':>7}"
print()
print(f"nproc {nproc}, loadavg before {load0}, after {load1}; publisher {size} 25 fps ({push}); parts {part_ms} ms; "
      f"one connection per viewer (h1: HTTP/1.1 keep-alive over TLS, h2: HTTP/2 over TLS, h3: HTTP/3 over QUIC)")
name = lambda r: f"{r['mode']}-{r['protocol']}"
for r in runs:
    idle = r["idle"]["server_util"] * 100 if r["idle"] else float("nan")
    print(f"{name(r)}: server alone {idle:.1f} % of a core")
    print(f"  {'viewers':>7} {'req/s':>7} {'MB/s':>6} {'server %':>8} {'core %':>6} {'gen %':>6} "
          f"{'load %':>6} {'keep-up':>7} {'lat p50':>7} {'lat p99':>7} {'err':>4} {'non200':>6} {'viewers/core':>12} {'marginal':>8}  note")
    for s in r["steps"]:
        notes = []
        if not s["kept_up"]:
            notes.append("not every viewer kept up")
        if s["server_saturated"]:
            notes.append("server core saturated")
        if s["generator_saturated"]:
            notes.append("generator saturated")
        print(f"  {s['viewers']:>7} {s['req_per_s']:>7.0f} {s['mb_per_s']:>6.1f} {s['cpu']['server_util'] * 100:>8.1f} "
              f"{s['cpu']['server_core_busy'] * 100:>6.1f} {s['cpu']['generator_util'] * 100:>6.1f} "
              f"{s['cpu']['load_core_busy'] * 100:>6.1f} {s['keep_up_ratio']:>7.3f} {lat(s, 'p50')} {lat(s, 'p99')} {s['errors']:>4} {s['non_200']:>6} "
              f"{s['viewers_per_core']:>12.0f} {s['viewers_per_core_marginal']:>8.0f}  {', '.join(notes)}")
print("keep-up: parts fetched / (viewers x window / part duration); lat: edge only, part body read minus the part's "
      "end by EXT-X-PROGRAM-DATE-TIME (ms); load %: the generator's core, anyone's use; viewers/core = viewers / server share of its core; marginal: over the "
      "server's share alone (ingest + packaging of the one stream for ferrocast)")
# The figure: the largest step every viewer of which kept up. Steps past
# it show where a side saturated; their viewers/core mean nothing.
summary = {}
for r in runs:
    kept = [s for s in r["steps"] if s["kept_up"]]
    best = max(kept, key=lambda s: s["viewers"]) if kept else None
    summary[name(r)] = None if best is None else {
        "viewers": best["viewers"], "server_util": best["cpu"]["server_util"],
        "viewers_per_core": best["viewers_per_core"],
        "viewers_per_core_marginal": best["viewers_per_core_marginal"],
        "generator_util": best["cpu"]["generator_util"]}
    if best is None:
        print(f"{name(r)}: no step kept up")
    else:
        print(f"{name(r)}: largest step that kept up: {best['viewers']} viewers at "
              f"{best['cpu']['server_util'] * 100:.1f} % of the server's core -> "
              f"{best['viewers_per_core']:.0f} viewers per core ({best['viewers_per_core_marginal']:.0f} marginal)")
for protocol in ("h1", "h2", "h3"):
    edge, nginx = summary.get(f"edge-{protocol}"), summary.get(f"static-{protocol}")
    if edge and nginx and nginx["viewers_per_core"] > 0:
        print(f"{protocol}: edge / nginx viewers per core = {edge['viewers_per_core'] / nginx['viewers_per_core']:.2f}")
ok = all(v is not None for v in summary.values())
print(json.dumps({"bench": "edge_viewers", "ok": ok, "nproc": int(nproc), "loadavg_before": load0,
                  "loadavg_after": load1, "size": size, "push": push, "part_ms": int(part_ms),
                  "summary": summary, "runs": runs}))
sys.exit(0 if ok else 1)
PY
