#!/usr/bin/env bash
# Ingest load benchmark: CPU per Mbit/s and the number of concurrent ~5 Mbit/s
# SRT publishers one core sustains without loss, Ferrocast against
# srt-live-transmit receiving the same load (see docs/BENCHMARKS.md).
#
# usage: benches/ingest_load.sh [extra srt_load flags]
#
# The load generator (srt_load, with every SRT caller) is pinned to LOAD_CPU;
# the target (ferrocast up, or the srt-live-transmit processes) to TARGET_CPU.
#
# Environment (all optional):
#   STREAMS     publisher counts to step through (default 10,25,50,100,150,200)
#   TARGETS     ferrocast,srt-live-transmit (default both, in that order)
#   WARMUP_S    seconds after the last caller starts before measuring (default 3)
#   WINDOW_S    measurement window, seconds (default 10)
#   LOAD_CPU    core for the load generator (default 0)
#   TARGET_CPU  core for the target process(es) (default 1)
#   KEEP_GOING=1  run every step even after saturation or loss
#
# The last line of output is one JSON object with every figure. Every process
# started here is killed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
streams=${STREAMS:-10,25,50,100,150,200}
targets=${TARGETS:-ferrocast,srt-live-transmit}
warmup_s=${WARMUP_S:-3}
window_s=${WINDOW_S:-10}
load_cpu=${LOAD_CPU:-0}
target_cpu=${TARGET_CPU:-1}

load_pid=
cleanup() {
    # srt_load runs in its own process group with every target it started.
    if [[ -n $load_pid ]]; then
        kill -TERM -- "-$load_pid" 2>/dev/null || true
        wait "$load_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in cargo ffmpeg srt-live-transmit taskset setsid getconf; do
    command -v "$tool" >/dev/null || { echo "ingest_load.sh: $tool is missing" >&2; exit 1; }
done
cpus=$(nproc --all)
((load_cpu < cpus && target_cpu < cpus)) || { echo "ingest_load.sh: only $cpus CPUs" >&2; exit 1; }
((load_cpu != target_cpu)) || echo "ingest_load.sh: warning: load generator and target share CPU $load_cpu" >&2

printf '== building (release)\n' >&2
(cd "$root" && cargo build --release --quiet -p ferrocast --bin ferrocast -p ferrocast-benches --bin srt_load)
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

extra=()
[[ ${KEEP_GOING:-0} == 1 ]] && extra+=(--keep-going)
printf '== srt_load on CPU %s, targets on CPU %s\n' "$load_cpu" "$target_cpu" >&2
# setsid: a process group of its own, so cleanup reaches every target too.
setsid taskset -c "$load_cpu" "$target_dir/release/srt_load" \
    --ferrocast "$target_dir/release/ferrocast" \
    --streams "$streams" --targets "$targets" \
    --warmup-s "$warmup_s" --window-s "$window_s" --target-cpu "$target_cpu" \
    "${extra[@]}" "$@" </dev/null &
load_pid=$!
status=0
wait "$load_pid" || status=$?
load_pid=
exit "$status"
