# Ferrocast tasks. The two README commands are scripts/up.sh and scripts/test.sh.

# run all-in-one with embedded defaults
up *ARGS:
    ./scripts/up.sh {{ARGS}}

# the whole test suite (what CI runs)
test:
    ./scripts/test.sh

# format and lint
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# fuzz one target (needs cargo-fuzz; stable toolchain via RUSTC_BOOTSTRAP)
fuzz TARGET SECONDS="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{TARGET}} -- -max_total_time={{SECONDS}}

# every fuzz target for MINUTES each, with a summary (see docs/security.md)
fuzz-all MINUTES="10":
    ./scripts/fuzz-all.sh {{MINUTES}}

# end-to-end latency benchmark (see docs/BENCHMARKS.md)
bench-latency:
    ./benches/latency.sh
