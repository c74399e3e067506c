#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests against
# real ffmpeg / srt-live-transmit senders and players, the hls.js browser
# test in headless Chromium, the edge's HTTP/3 test with aioquic, the
# vendored SRT stack's own tests, the deployment artefacts (Dockerfile,
# docker-compose.yml, k8s/: scripts/validate-deploy.sh), and every fuzz
# target run for a few seconds. Installs what it needs; every server a test
# needs is started by the test on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_debian_packages "${BUILD_PACKAGES[@]}" ffmpeg srt-tools chromium redis-server postgresql curl
# Node.js may come from Debian or from elsewhere (NodeSource ships npm inside nodejs).
command -v node >/dev/null || install_debian_packages nodejs
command -v npm >/dev/null || install_debian_packages npm

echo "== browser test dependencies (npm)" >&2
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== HTTP/3 test client (aioquic)" >&2
command -v python3 >/dev/null || install_debian_packages python3
python3 -c "import aioquic" 2>/dev/null || {
  python3 -m pip --version >/dev/null 2>&1 || install_debian_packages python3-pip
  python3 -m pip install --user --quiet aioquic 2>/dev/null ||
    python3 -m pip install --user --quiet --break-system-packages aioquic
}

echo "== OpenAPI validator (openapi-spec-validator)" >&2
python3 -c "import openapi_spec_validator" 2>/dev/null || {
  python3 -m pip --version >/dev/null 2>&1 || install_debian_packages python3-pip
  python3 -m pip install --user --quiet openapi-spec-validator 2>/dev/null ||
    python3 -m pip install --user --quiet --break-system-packages openapi-spec-validator
}

echo "== S3-compatible test server (moto)" >&2
# 5.1: moto 5.2's generic response serializer names CompleteMultipartUpload's
# XML root CompleteMultipartUploadResponse where S3 (and aws-sdk-s3's
# parser) has CompleteMultipartUploadResult, so multipart uploads fail
# against it.
MOTO='moto[server]==5.1.22'
python3 -c "import moto.server, sys; sys.exit(moto.__version__ != '5.1.22')" 2>/dev/null || {
  python3 -m pip --version >/dev/null 2>&1 || install_debian_packages python3-pip
  python3 -m pip install --user --quiet "$MOTO" 2>/dev/null ||
    python3 -m pip install --user --quiet --break-system-packages "$MOTO"
}

echo "== deployment manifests" >&2
./scripts/validate-deploy.sh

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
REQUIRE_BROWSER_TESTS=1 REQUIRE_H3_TESTS=1 REQUIRE_REDIS_TESTS=1 REQUIRE_POSTGRES_TESTS=1 REQUIRE_OPENAPI_TESTS=1 REQUIRE_DEPLOY_TESTS=1 REQUIRE_S3_TESTS=1 cargo test --locked --workspace
echo "== deployment manifests: every role starts with its compose and k8s settings" >&2
./scripts/validate-deploy.sh --roles
echo "== cargo doc" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps -q
echo "== vendored srt-protocol: upstream's tests and our hostile-input regressions" >&2
cargo test --locked --manifest-path vendor/srt-protocol/Cargo.toml --lib -q
echo "== fuzz targets: built with cargo-fuzz, each run for a few seconds" >&2
SECONDS_EACH=5 ./scripts/fuzz-all.sh
echo "all tests passed" >&2
