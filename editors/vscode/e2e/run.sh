#!/usr/bin/env bash
# The VS Code extension's end-to-end tests in a real VS Code (code-server + Chromium), from
# nothing: sets up the test editor (setup.sh, cached), packages the .vsix when it is missing
# or older than the extension's sources, and runs e2e.mjs. Needs the server in .venv
# (scripts/setup.sh). Arguments go to e2e.mjs: --screenshots, --only 1,2, --keep.
set -euo pipefail
cd "$(dirname "$0")"
e2e=$PWD
ext=$(cd .. && pwd)
repo=$(cd ../../.. && pwd)
start=$(date +%s)

if [ ! -x "$repo/.venv/bin/smalltalk-lsp" ]; then
  echo "e2e: $repo/.venv/bin/smalltalk-lsp missing: run scripts/setup.sh first" >&2
  exit 1
fi

bash "$e2e/setup.sh"

vsix=$ext/smalltalk-lsp.vsix
stale=""
if [ -f "$vsix" ]; then
  stale=$(find "$ext/src" "$ext/syntaxes" "$ext/package.json" "$ext/language-configuration.json" -newer "$vsix" -print -quit)
fi
if [ ! -f "$vsix" ] || [ -n "$stale" ]; then
  echo "== e2e: packaging the extension (${stale:-no .vsix yet})"
  (
    cd "$ext"
    [ -d node_modules ] || npm ci --no-audit --no-fund
    npm run --silent package
  )
fi

echo "== e2e: setup took $(( $(date +%s) - start )) s"
PATH="$e2e/node_modules/.bin:$PATH" node "$e2e/e2e.mjs" "$@"
