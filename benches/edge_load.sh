#!/usr/bin/env bash
# Edge load benchmark: Ferrocast's HTTPS edge (viewer JWT, edge tokens,
# playlist rewriting, coalescing cache) against nginx serving the same bytes
# as static files (with secure_link when built in), under h2load (HTTP/2)
# and wrk (HTTP/1.1), with each server's requests/s, p99 and CPU time per
# request, plus the memory of 10,000 held blocking playlist requests
# (benches/src/bin/edge_hold.rs). All on loopback, in one run.
#
# usage: benches/edge_load.sh
#
# Environment (all optional):
#   DURATION        seconds per load case (default 10; h2load adds a 1 s warm-up)
#   H2_CONNECTIONS  h2load -c (default 16)
#   H2_STREAMS      h2load -m, concurrent streams per connection (default 16)
#   H1_CONNECTIONS  wrk -c (default 64)
#   LOAD_THREADS    h2load -t / wrk -t (default 1)
#   VIEWERS         held blocking requests (default 10000; 0 skips that part)
#   HOLD_SECONDS    how long they are held once all are written (default 2)
#   SIZE            pushed picture size (default 1280x720)
#
# Every process started here is killed on exit. See docs/BENCHMARKS.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10}
h2_conns=${H2_CONNECTIONS:-16}
h2_streams=${H2_STREAMS:-16}
h1_conns=${H1_CONNECTIONS:-64}
threads=${LOAD_THREADS:-1}
viewers=${VIEWERS:-10000}
hold_s=${HOLD_SECONDS:-2}
size=${SIZE:-1280x720}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferrocast-edge-load.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
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
die() { echo "edge_load.sh: $*" >&2; exit 1; }

# install_debian_packages
# shellcheck source=../scripts/deps.sh
source "$root/scripts/deps.sh"

command -v h2load >/dev/null && command -v wrk >/dev/null && command -v nginx >/dev/null ||
    install_debian_packages nghttp2-client wrk nginx
for tool in cargo ffmpeg openssl curl python3 h2load wrk nginx; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
nginx_bin=$(command -v nginx)
secure_link=0
"$nginx_bin" -V 2>&1 | grep -q -- '--with-http_secure_link_module' && secure_link=1

# Each held viewer is one socket on each side.
if ((viewers > 0)); then
    ulimit -n "$(ulimit -Hn)"
    (($(ulimit -n) >= viewers + 1000)) || die "ulimit -n is $(ulimit -n); $((viewers + 1000)) needed for $viewers viewers"
fi

log "building (release)"
(cd "$root" && cargo build --release --quiet -p ferrocast --bin ferrocast -p ferrocast-benches --bin edge_hold)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ferrocast_bin=$target_dir/release/ferrocast
hold_bin=$target_dir/release/edge_hold

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rand_secret() { openssl rand -hex 24; }

# ---- One self-signed certificate for both servers -------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -addext 'basicConstraints=critical,CA:FALSE' -addext 'extendedKeyUsage=serverAuth' \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
jwt_secret=$(rand_secret)
edge_secret=$(rand_secret)
link_secret=$(rand_secret)

# ---- Ferrocast with the edge ------------------------------------------------
cat >"$tmp/ferrocast.toml" <<EOF
[ingest]
# The publisher is stopped for a few seconds while the requests are held.
idle_timeout_ms = 30000

[hls]
max_hold_ms = 20000

[edge]
https_listen = "127.0.0.1:0"
tls_cert = "$tmp/cert.pem"
tls_key = "$tmp/key.pem"
http3 = false

[edge.jwt]
audience = "ferrocast-bench"

[[edge.jwt.keys]]
kid = "hs"
algorithm = "HS256"
secret = "$jwt_secret"

[edge.token]
# Long enough for the signed URLs to outlive the run.
media_ttl_secs = 3600
keys = [{ kid = 1, secret = "$edge_secret" }]

[edge.limits]
# One load generator, one address, one token: the per-IP and per-token
# rate limits would answer nearly every request 429 (nginx has none here).
per_ip = { enabled = false }
per_token = { enabled = false }
EOF

log "ferrocast up (edge on, --ladder off)"
mkdir -p "$tmp/data"
env $(env | sed -n 's/^\(FERROCAST_[^=]*\)=.*/-u \1/p') FERROCAST_LOG=warn \
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

log "pushing $size 25 fps (x264 zerolatency) over SRT to $srt"
ffmpeg -hide_banner -loglevel error -re \
    -f lavfi -i "testsrc2=size=$size:rate=25" -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k -t 3600 \
    -f mpegts "srt://$srt?streamid=publish:live/bench&pkt_size=1316" </dev/null >"$tmp/push.log" 2>&1 &
push_pid=$!
pids+=("$push_pid")

# ---- Viewer JWT, then the signed URLs the edge hands out -------------------
jwt=$(python3 - "$jwt_secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "hs"}).encode())
body = b64(json.dumps({"sub": "bench", "aud": "ferrocast-bench", "exp": int(time.time()) + 7200,
                       "streams": ["bench"]}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
)
base=https://$https
fetch() { curl -fsS --cacert "$tmp/cert.pem" "$@"; }

deadline=$((SECONDS + 30))
until fetch -H "Authorization: Bearer $jwt" "$base/live/bench/index.m3u8" >"$tmp/index.m3u8" 2>/dev/null; do
    ((SECONDS < deadline)) || die "no multivariant playlist from the edge"
    sleep 0.2
done
media_uri=$(grep -m1 -v '^#' "$tmp/index.m3u8") || die "no media playlist URI in index.m3u8"
media_url=$base/live/bench/$media_uri
# Wait for three whole segments, so that a part of a finished segment exists.
until (($(fetch "$media_url" 2>/dev/null | tee "$tmp/media.m3u8" | grep -c '^#EXTINF') >= 3)); do
    ((SECONDS < deadline + 30)) || die "the media playlist never listed 3 segments"
    sleep 0.2
done
# A part of the last finished segment, and that segment.
read -r part_uri seg_uri < <(python3 - "$tmp/media.m3u8" <<'PY'
import re, sys
parts, last_part, seg = [], None, None
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("#EXT-X-PART:"):
        parts.append(re.search(r'URI="([^"]+)"', line).group(1))
    elif line and not line.startswith("#"):
        last_part, seg, parts = parts[-1] if parts else last_part, line, []
print(last_part, seg)
PY
)
[[ $part_uri != None && $seg_uri != None ]] || die "no finished part in the media playlist"
part_url=$base/live/bench/$part_uri
seg_url=$base/live/bench/$seg_uri
part_file=${part_uri%%\?*}
fetch -o "$tmp/part.m4s" "$part_url" || die "the edge did not serve the part"
fetch -o "$tmp/seg.m4s" "$seg_url" || die "the edge did not serve the segment"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/cert.pem" "$base/live/bench/$part_file") || true
[[ $code == 401 ]] || die "the edge answered $code (not 401) for a part without a token"
log "edge: media playlist $(wc -c <"$tmp/media.m3u8") B, part $part_file $(wc -c <"$tmp/part.m4s") B, segment $(wc -c <"$tmp/seg.m4s") B"

# ---- Baseline: nginx, the same bytes as static files -----------------------
mkdir -p "$tmp/www/live/bench" "$tmp/nginx"
cp "$tmp/media.m3u8" "$tmp/www/live/bench/stream.m3u8"
cp "$tmp/part.m4s" "$tmp/www/live/bench/$part_file"
chmod -R a+rX "$tmp/www"
chmod a+x "$tmp"
nginx_port=$(free_port)
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
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$nginx_port ssl http2;
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
log "nginx on 127.0.0.1:$nginx_port (secure_link: $secure_link)"
"$nginx_bin" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")
nginx_base=https://127.0.0.1:$nginx_port
nginx_playlist_url=$nginx_base/live/bench/stream.m3u8$(link_query /live/bench/stream.m3u8)
nginx_part_url=$nginx_base/live/bench/$part_file$(link_query "/live/bench/$part_file")
deadline=$((SECONDS + 10))
until fetch -o "$tmp/nginx-part.m4s" "$nginx_part_url" 2>/dev/null; do
    ((SECONDS < deadline)) || { cat "$tmp/nginx/error.log" >&2; die "nginx did not start"; }
    sleep 0.1
done
cmp -s "$tmp/part.m4s" "$tmp/nginx-part.m4s" || die "nginx served different part bytes"
if ((secure_link)); then
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/cert.pem" "$nginx_base/live/bench/$part_file") || true
    [[ $code == 403 ]] || die "nginx answered $code (not 403) without secure_link parameters"
fi

# ---- Load -------------------------------------------------------------------
results=$tmp/results.jsonl
: >"$results"
# CPU time (user + system, clock ticks) of the server under test: the
# ferrocast process, or nginx's master and workers. Requests per CPU second
# do not depend on what else shares the cores, unlike requests per second.
server_ticks() { # name
    local pid ticks=0 stat
    if [[ $1 == *-edge-* ]]; then
        set -- "$ferrocast_pid"
    else
        set -- "$nginx_pid" $(pgrep -P "$nginx_pid" || true)
    fi
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        ticks=$((ticks + fields[11] + fields[12]))
    done
    echo "$ticks"
}
clk_tck=$(getconf CLK_TCK)
h2() { # name url
    local name=$1 url=$2 t0 t1
    log "h2load $name: -t $threads -c $h2_conns -m $h2_streams -D $duration"
    t0=$(server_ticks "$name")
    h2load -t "$threads" -c "$h2_conns" -m "$h2_streams" -D "$duration" --warm-up-time=1 \
        --log-file "$tmp/$name.log" "$url" >"$tmp/$name.out" 2>&1 || { cat "$tmp/$name.out" >&2; die "h2load $name failed"; }
    t1=$(server_ticks "$name")
    python3 - "$name" "$tmp/$name.out" "$tmp/$name.log" "$(((t1 - t0)))" "$clk_tck" >>"$results" <<'PY'
import json, re, sys
name, out, logf = sys.argv[1:4]
cpu_s = int(sys.argv[4]) / int(sys.argv[5])
text = open(out).read()
rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", text).group(1))
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
durs = sorted(int(l.split()[2]) for l in open(logf) if len(l.split()) >= 3)
p = lambda q: durs[max(0, -(-len(durs) * q // 100) - 1)] / 1000 if durs else None
ok = int(m.group(4)) > 0 and int(m.group(5)) == 0 and int(m.group(6)) == 0 and sum(map(int, codes.groups()[1:])) == 0
# h2load's warm-up second is in the CPU time but not in "done": both
# servers carry the same bias.
print(json.dumps({"case": name, "tool": "h2load", "rps": rps, "done": int(m.group(3)), "cpu_s": cpu_s,
                  "us_per_req": round(cpu_s * 1e6 / max(1, int(m.group(3))), 1), "failed": int(m.group(5)),
                  "errored": int(m.group(6)), "non_2xx": sum(map(int, codes.groups()[1:])),
                  "p50_ms": p(50), "p99_ms": p(99), "ok": ok}))
PY
}
h1() { # name url
    local name=$1 url=$2 t0 t1
    log "wrk $name: -t $threads -c $h1_conns -d ${duration}s"
    t0=$(server_ticks "$name")
    wrk -t "$threads" -c "$h1_conns" -d "${duration}s" --latency "$url" >"$tmp/$name.out" 2>&1 ||
        { cat "$tmp/$name.out" >&2; die "wrk $name failed"; }
    t1=$(server_ticks "$name")
    python3 - "$name" "$tmp/$name.out" "$(((t1 - t0)))" "$clk_tck" >>"$results" <<'PY'
import json, re, sys
name, out = sys.argv[1:3]
cpu_s = int(sys.argv[3]) / int(sys.argv[4])
text = open(out).read()
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
def pct(q):
    m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return round(float(m.group(1)) * unit[m.group(2)], 3) if m else None
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
done = int(re.search(r"(\d+) requests in", text).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: (.*)", text)
ok = done > 0 and not non2xx and not errors
print(json.dumps({"case": name, "tool": "wrk", "rps": rps, "done": done, "cpu_s": cpu_s,
                  "us_per_req": round(cpu_s * 1e6 / max(1, done), 1),
                  "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else None,
                  "p50_ms": pct(50), "p99_ms": pct(99), "ok": ok}))
PY
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Edge and nginx alternate, case by case. The part cases come first: a
# part leaves the origin's window a few segments after it was written, and
# the edge's copy (cached on the first fetch above) lives for at most the
# coalescing cache's 60 s; the part is picked just before.
h2 h2-edge-part "$part_url"
h2 h2-nginx-part "$nginx_part_url"
h1 h1-edge-part "$part_url"
h1 h1-nginx-part "$nginx_part_url"
h2 h2-edge-playlist "$media_url"
h2 h2-nginx-playlist "$nginx_playlist_url"
h1 h1-edge-playlist "$media_url"
h1 h1-nginx-playlist "$nginx_playlist_url"
load_after_http=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- Held blocking requests ------------------------------------------------
hold_json=null
if ((viewers > 0)); then
    log "holding $viewers blocking playlist requests (HTTP/1.1 over TLS)"
    sleep 2
    "$hold_bin" --addr "$https" --playlist "/live/bench/$media_uri" --cert "$tmp/cert.pem" \
        --viewers "$viewers" --server-pid "$ferrocast_pid" --pause-pid "$push_pid" --hold-s "$hold_s" \
        >"$tmp/hold.out" 2> >(tee "$tmp/hold.err" >&2) || { cat "$tmp/hold.out" >&2; die "edge_hold failed"; }
    hold_json=$(tail -n1 "$tmp/hold.out")
fi

# ---- Report -------------------------------------------------------------------
python3 - "$results" "$hold_json" "$(nproc)" "$load_before" "$load_after_http" "$secure_link" \
    "$duration" "$h2_conns" "$h2_streams" "$h1_conns" "$threads" "$size" <<'PY'
import json, sys
res_path, hold, nproc, load0, load1, secure_link, duration, h2c, h2m, h1c, threads, size = sys.argv[1:13]
rows = [json.loads(l) for l in open(res_path)]
by = {r["case"]: r for r in rows}
print()
print(f"nproc {nproc}, loadavg before {load0}, after the HTTP cases {load1}; {duration} s per case; "
      f"h2load -t {threads} -c {h2c} -m {h2m}, wrk -t {threads} -c {h1c}; nginx secure_link: "
      f"{'yes' if secure_link == '1' else 'no (plain static)'}; publisher {size} 25 fps")
print(f"{'case':14} {'edge req/s':>10} {'p99 ms':>7} {'CPU us/req':>10}   {'nginx req/s':>11} {'p99 ms':>7} "
      f"{'CPU us/req':>10}   {'req/s ratio':>11} {'CPU ratio':>9}")
for proto in ("h2", "h1"):
    for what in ("playlist", "part"):
        e, n = by[f"{proto}-edge-{what}"], by[f"{proto}-nginx-{what}"]
        print(f"{proto + ' ' + what:14} {e['rps']:>10.0f} {e['p99_ms']!s:>7} {e['us_per_req']:>10}   "
              f"{n['rps']:>11.0f} {n['p99_ms']!s:>7} {n['us_per_req']:>10}   {e['rps'] / n['rps']:>11.2f} "
              f"{n['us_per_req'] / max(e['us_per_req'], 0.1):>9.2f}")
print("req/s ratio: edge / nginx (shared cores: noisy); CPU ratio: nginx CPU per request / edge CPU per request "
      "(above 1: the edge spends less)")
h = json.loads(hold)
if h:
    print(f"held: {h['connected']}/{h['viewers']} connected in {h['connect_s']:.1f} s; RSS "
          f"{h['rss_before'] / 2**20:.1f} MiB before, {h['rss_connected'] / 2**20:.1f} MiB connected, "
          f"{h['rss_held_peak'] / 2**20:.1f} MiB held: {h['bytes_per_viewer_held']:.0f} B per held viewer "
          f"({h['bytes_per_viewer_connection']:.0f} connection + {h['bytes_per_held_request']:.0f} request); "
          f"200s {h['statuses'].get('200', 0)}, early {h['completed_before_resume']}, "
          f"after resume p99 {h['after_resume_ms']['p99']:.0f} ms")
ok = all(r["ok"] for r in rows) and (h is None or h["ok"])
print(json.dumps({"bench": "edge_load", "ok": ok, "nproc": int(nproc), "loadavg_before": load0,
                  "loadavg_after_http": load1, "nginx_secure_link": secure_link == "1", "cases": rows, "held": h}))
sys.exit(0 if ok else 1)
PY
