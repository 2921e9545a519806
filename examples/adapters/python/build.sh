#!/usr/bin/env bash
# Builds discord.wasm, the Discord adapter, from app.py (with sdk/python/wasmhook.py) with
# componentize-py.
# Needs python3 (3.9 or newer) with the venv module (scripts/setup installs it from Debian
# when missing); installs the pinned componentize-py into .venv/ (about 70 MB). Safe to run
# again, from any directory: it does nothing when discord.wasm is newer than its sources.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if [[ ! .venv/installed -nt requirements.txt ]]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    touch .venv/installed
fi
if [[ -f discord.wasm && -z "$(find app.py requirements.txt ../../../wit ../../../sdk/python/wasmhook.py -newer discord.wasm)" ]]; then
    echo "discord.wasm is up to date"
    exit 0
fi
# The helper module wasmhook.py comes from sdk/python, on the module path (-p).
.venv/bin/componentize-py -d ../../../wit/v0.2.0 -w adapter componentize -p . -p ../../../sdk/python app -o discord.wasm
