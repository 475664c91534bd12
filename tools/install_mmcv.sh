#!/usr/bin/env bash
# Installs mmcv-full with compiled ops into the given Python environment.
#
# pip's wheel cache does not key on the torch version, and a wheel built against another torch
# fails at import. So the built wheel is kept in a cache folder named after the installed torch
# version and the kind of ops (cpu / cuda); it is built there once (~11-18 min on 2 cores).
#
# Usage: tools/install_mmcv.sh PYTHON [MMCV_VERSION]
#   RDOQ_CACHE       cache root (default ~/.cache/rdoq-plugins)
#   FORCE_CUDA=1     build the CUDA ops (needs nvcc; set TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0")
#   MAX_JOBS         parallel compile jobs (default: number of cores)
set -euo pipefail
py=${1:?usage: install_mmcv.sh PYTHON [MMCV_VERSION]}
version=${2:-1.7.2}
cache=${RDOQ_CACHE:-$HOME/.cache/rdoq-plugins}

torch_version=$("$py" -c 'import torch; print(torch.__version__.replace("+", "_"))')
ops=cpu
if [ "${FORCE_CUDA:-0}" = 1 ] || "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  ops=cuda
fi
dir="$cache/wheels/torch-$torch_version-$ops"
wheel=$(ls "$dir"/mmcv_full-"$version"-*.whl 2>/dev/null | head -n 1 || true)

if [ -z "$wheel" ]; then
  echo "install_mmcv: building mmcv-full $version ($ops ops) against torch $torch_version; this takes 10-20 min"
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$py" -m pip wheel --no-build-isolation --no-deps \
    --no-cache-dir -w "$tmp" "mmcv-full==$version"
  mv "$tmp"/mmcv_full-"$version"-*.whl "$dir"/
  wheel=$(ls "$dir"/mmcv_full-"$version"-*.whl | head -n 1)
else
  echo "install_mmcv: using cached $wheel"
fi
"$py" -m pip install -c constraints.txt "$wheel"
"$py" -c "import mmcv, mmcv.ops; print('install_mmcv: mmcv', mmcv.__version__, 'with ops OK')"
