#!/usr/bin/env bash
# Build the three synthtune images: `make images`, or scripts/build_images.sh [generator trainer evaluator].
#
# Uses docker when a daemon answers, else buildah through the stand-in script (machines without a
# Docker daemon or registry access: it installs buildah/podman and makes a local stand-in for the
# python:*-slim base image from Debian packages).
#
# Environment:
#   IMAGE_PREFIX     image names are $IMAGE_PREFIX/synthtune-<name>:$IMAGE_TAG (default localhost, dev)
#   IMAGE_TAG
#   TORCH_INDEX_URL  passed as the build argument of that name (where torch 2.13.0 comes from); unset:
#                    each Dockerfile's default (the real CPU/GPU builds users want)
#   TORCH_WHEELS     a folder holding torch-2.13.0+cpu-*.whl, or "auto" to look for one in pip's
#                    find-links: served on a loopback index and used as TORCH_INDEX_URL, so all three
#                    images get CPU torch without reaching download.pytorch.org (what CI does here)
#   TORCH_INDEX_PORT loopback port of that index (default 38761). Fixed on purpose: the URL is a build
#                    argument, so a port that changed per build would miss every cached RUN layer
#   STANDIN          path of standin-base.sh (default ../shared/tools/standin-base.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${IMAGE_PREFIX:-localhost}
tag=${IMAGE_TAG:-dev}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(generator trainer evaluator)

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  build() { docker build "$@"; }
else
  standin=${STANDIN:-../shared/tools/standin-base.sh}
  [ -x "$standin" ] || { echo "build_images: no docker daemon and no stand-in script at $standin (set STANDIN)" >&2; exit 1; }
  "$standin" setup
  for base in $(sed -n 's/^FROM \([^ ]*python:[^ ]*\).*/\1/p' Dockerfile.* | sort -u); do "$standin" base "$base"; done
  build() { "$standin" build "$@"; }
fi

args=(--build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)")
server=
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; [ -z "${index:-}" ] || rm -rf "$index"; }
trap cleanup EXIT
if [ -n "${TORCH_WHEELS:-}" ] && [ -z "${TORCH_INDEX_URL:-}" ]; then
  wheels=$TORCH_WHEELS
  if [ "$wheels" = auto ]; then
    wheels=
    for d in ${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
      if compgen -G "$d/torch-2.13.0+cpu-cp311-*.whl" >/dev/null; then wheels=$d; break; fi
    done
    [ -n "$wheels" ] || { echo "build_images: TORCH_WHEELS=auto found no torch-2.13.0+cpu cp311 wheel; using the Dockerfiles' defaults" >&2; }
  fi
  if [ -n "$wheels" ]; then
    # A PEP 503 index with one project, torch, on loopback (the build runs on the host network).
    index=$(mktemp -d)
    mkdir -p "$index/simple/torch"
    for w in "$wheels"/torch-2.13.0+cpu-*.whl; do ln -s "$(readlink -f "$w")" "$index/simple/torch/"; done
    port=${TORCH_INDEX_PORT:-38761}
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null || {
      echo "build_images: port $port on 127.0.0.1 is taken (the torch index needs it; a fixed port keeps the build cache valid). Free it or set TORCH_INDEX_PORT to a free port" >&2
      exit 1; }
    python3 -m http.server --bind 127.0.0.1 --directory "$index" "$port" >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 50); do python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/simple/torch/')" 2>/dev/null && break; sleep 0.1; done
    TORCH_INDEX_URL=http://127.0.0.1:$port/simple
    echo "build_images: torch from $wheels, served at $TORCH_INDEX_URL"
  fi
fi
[ -z "${TORCH_INDEX_URL:-}" ] || args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

for name in "${names[@]}"; do
  [ -f "Dockerfile.$name" ] || { echo "build_images: no Dockerfile.$name" >&2; exit 2; }
  start=$(date +%s)
  build -f "Dockerfile.$name" -t "$prefix/synthtune-$name:$tag" "${args[@]}" .
  echo "build_images: $prefix/synthtune-$name:$tag built in $(( $(date +%s) - start )) s"
done
