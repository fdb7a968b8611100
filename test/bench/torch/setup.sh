#!/usr/bin/env bash
# Set-up of the PyTorch twin (test/bench/torch/twin.py): Debian's python3-torch for
# Debian's /usr/bin/python3 (not a pyenv or virtualenv python3 first on PATH). Does
# nothing when /usr/bin/python3 already imports torch; otherwise installs the package
# with apt-get (as root, or through sudo). Run by test/bench/trainer-throughput.ts.
set -euo pipefail
py=/usr/bin/python3
if [ -x "$py" ] && "$py" -c 'import torch' >/dev/null 2>&1; then exit 0; fi
echo "torch/setup.sh: $py cannot import torch; installing Debian's python3-torch (apt-get install python3-torch)" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "torch/setup.sh: not root and no sudo: run apt-get install python3-torch as root" >&2
  exit 1
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-torch >/dev/null
"$py" -c 'import torch' || { echo "torch/setup.sh: python3-torch is installed but $py still cannot import torch" >&2; exit 1; }
