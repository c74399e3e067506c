# shellcheck shell=bash
# Installs the Debian packages named in "$@" that are missing (sourced by
# the other scripts). Needs root or sudo; does nothing when all are present.
install_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building Ferrocast needs from Debian: a C toolchain, FFmpeg's
# libraries with clang for their bindings (the transcoder, `ffmpeg-next`),
# and `protoc` for the gRPC bus (`proto/`).
BUILD_PACKAGES=(pkg-config gcc clang libclang-dev libavcodec-dev libavformat-dev
  libavutil-dev libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev
  protobuf-compiler)

# A Cargo target directory outside the clone keeps repeated runs fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrocast/target}"
