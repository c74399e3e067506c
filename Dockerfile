# syntax=docker/dockerfile:1
# Ferrocast's container image: the one `ferrocast` binary, which runs any
# role (`up`, `ingest`, `transcode`, `package`, `edge`, `control`); the
# command picks.
#
#   docker build -t ferrocast .
#   docker run --rm -p 9000:9000/udp -p 8080:8080 ferrocast up
#
# docker-compose.yml and k8s/ run it as separate processes.

# --- build: Debian 12 with the Rust toolchain ------------------------------
FROM rust:1.95-bookworm AS build
# What building Ferrocast needs from Debian: BUILD_PACKAGES in scripts/deps.sh
# (C toolchain, clang for FFmpeg's bindings, FFmpeg's headers, protoc).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config gcc clang libclang-dev libavcodec-dev libavformat-dev \
      libavutil-dev libswscale-dev libswresample-dev libavfilter-dev \
      libavdevice-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The crate registry and the target directory are BuildKit cache mounts:
# kept from one build to the next, never part of a layer. Being a cache
# mount, the target directory is gone after this RUN, so the binary is
# copied out of it here.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ferrocast \
 && install -D -m 0755 target/release/ferrocast /out/ferrocast

# --- runtime: Debian 12 with FFmpeg's shared libraries only ----------------
FROM debian:12-slim
# The FFmpeg 5.1 libraries the binary links (and what they pull in), and CA
# certificates for HTTPS origins. No ffmpeg program, no compiler, no curl:
# health checks use `ferrocast probe URL`.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 \
      libavfilter8 libavdevice59 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed, numeric non-root user: Kubernetes' runAsNonRoot can only verify a
# numeric USER, and the manifests pin the same uid (10001).
RUN groupadd --system --gid 10001 ferrocast \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin ferrocast \
 && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=build /out/ferrocast /usr/local/bin/ferrocast
# With the NVIDIA Container Toolkit, these ask for the GPUs and the driver
# libraries NVENC/NVDEC need (`video`) besides CUDA (`compute`) and
# nvidia-smi (`utility`). Without a GPU they do nothing: the transcoder
# finds no CUDA driver and encodes on the CPU (unless transcode.nvenc is
# "require").
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,video,utility \
    FERROCAST_DATA_DIR=/data
WORKDIR /data
# Declared after it is created and chowned, so a new volume starts owned by
# the user.
VOLUME /data
USER 10001:10001
# SRT (UDP 9000), media bus (7000), HTTP: origin, /metrics, /healthz,
# /readyz (8080), edge HTTPS (TCP 8443) and HTTP/3 (UDP 8443).
EXPOSE 9000/udp 7000 8080 8443 8443/udp
ENTRYPOINT ["ferrocast"]
CMD ["up"]
