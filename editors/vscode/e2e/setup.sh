#!/usr/bin/env bash
# Sets up the editor the end-to-end tests drive, from nothing; a second run takes seconds.
#   - Debian: chromium (driven by Playwright) and the headers code-server's native modules
#     compile against; installed only when missing (apt-get update only then).
#   - npm, in this folder (package.json + package-lock.json): node 24 (code-server 4.139.1
#     refuses older), code-server (VS Code in a browser) and playwright-core.
# Done when node_modules/.setup-done matches package-lock.json; delete it to force a rerun.
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD

log() { echo "== e2e setup: $*"; }

apt_packages=(chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev)
missing=()
for pkg in "${apt_packages[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  log "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=node_modules/.setup-done
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && [ -x node_modules/.bin/node ] && [ -x node_modules/.bin/code-server ]; then
  log "cached ($(node_modules/.bin/node --version), code-server $(node -p 'require("./node_modules/code-server/package.json").version'))"
  exit 0
fi

# Three steps, because code-server's install script must run under node 24, which is itself
# an npm package: unpack everything without scripts, set up node, then build the rest with
# node 24 first on PATH.
log "npm ci (no scripts)"
rm -f "$stamp"
npm ci --ignore-scripts --no-audit --no-fund
log "node 24"
npm rebuild node --foreground-scripts
export PATH="$here/node_modules/.bin:$PATH"
log "using node $(node --version)"
log "code-server's install (native modules; a few minutes)"
# Prebuilt binaries come from GitHub, which these machines cannot reach: node-gyp compiles
# them, on every core.
export npm_config_jobs=max
npm rebuild --foreground-scripts
test -f node_modules/code-server/out/node/entry.js
echo "$want" > "$stamp"
log "done"
