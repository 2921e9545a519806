#!/usr/bin/env bash
# Builds teams.wasm, the Microsoft Teams adapter, from teams.js with componentize-js.
# Needs node and npm (scripts/setup installs them from Debian when missing); installs the
# pinned npm packages into node_modules/ (about 385 MB). Safe to run again, from any
# directory: it does nothing when teams.wasm is newer than its sources.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# npm keeps its own copy of the lock file in node_modules/; when that is newer than ours, the
# pinned packages are already installed.
if [[ ! node_modules/.package-lock.json -nt package-lock.json ]]; then
    npm ci --no-audit --no-fund
fi
if [[ -f teams.wasm && -z "$(find teams.js build.mjs package-lock.json ../../../wit ../../../sdk/js/wasmhook.js -newer teams.wasm)" ]]; then
    echo "teams.wasm is up to date"
    exit 0
fi
node build.mjs
