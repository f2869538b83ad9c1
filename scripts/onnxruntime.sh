#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library that github.com/yalue/onnxruntime_go expects, from the
# onnxruntime-node npm package (which ships libonnxruntime.so for linux x64 and arm64), into
# .cache/onnxruntime/, and prints its path. Run again: nothing is fetched twice.
#   scripts/onnxruntime.sh            # prints .../libonnxruntime.so.1.24.1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=1.24.1 # onnxruntime_go v1.27.0 is built against the 1.24 C API
dir=.cache/onnxruntime
lib="$dir/libonnxruntime.so.$version"
if [[ ! -f "$lib" ]]; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "onnxruntime: no library for $(uname -m) in onnxruntime-node" >&2; exit 1 ;;
  esac
  command -v npm >/dev/null || { echo "onnxruntime: npm is needed to fetch onnxruntime-node (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "onnxruntime: fetching onnxruntime-node@$version from the npm registry (about 85 MB)" >&2
  (cd "$tmp" && npm pack "onnxruntime-node@$version" --silent >/dev/null)
  tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  # npm checks the tarball against the registry's integrity hash; the library is checked again here.
  want_x64=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
  got=$(sha256sum "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" | cut -d' ' -f1)
  if [[ $arch == x64 && $got != "$want_x64" ]]; then
    echo "onnxruntime: libonnxruntime.so from onnxruntime-node@$version has SHA-256 $got, want $want_x64" >&2
    exit 1
  fi
  mv "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib"
fi
echo "$PWD/$lib"
