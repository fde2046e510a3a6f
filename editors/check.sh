#!/usr/bin/env bash
# Builds, lints, tests and packages the editor clients:
#   editors/vscode: npm ci, compile, lint, test, package (-> editors/vscode/smalltalk-lsp.vsix)
#   editors/nvim:   the plugin's headless tests against the stub server
# Needs node/npm (20+). Neovim: SMALLTALK_NVIM, else .venv/bin/nvim, else nvim on PATH; fails if none.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { echo "== $*"; }

(
  cd editors/vscode
  step "vscode: npm ci"; npm ci --no-audit --no-fund
  step "vscode: compile"; npm run --silent compile
  step "vscode: lint"; npm run --silent lint
  step "vscode: test"; node --test out/test/
  step "vscode: package"; npm run --silent package
  ls -l smalltalk-lsp.vsix
)

nvim_bin=${SMALLTALK_NVIM:-}
if [ -z "$nvim_bin" ] && [ -x "$root/.venv/bin/nvim" ]; then nvim_bin=$root/.venv/bin/nvim; fi
if [ -z "$nvim_bin" ] && command -v nvim >/dev/null; then nvim_bin=$(command -v nvim); fi
if [ -z "$nvim_bin" ]; then
  echo "== nvim: no Neovim found (SMALLTALK_NVIM, .venv/bin/nvim, PATH): run scripts/setup.sh" >&2
  exit 1
fi
python=${PYTHON:-python3}
if [ -x "$root/.venv/bin/python" ]; then python=$root/.venv/bin/python; fi
step "nvim: plugin tests with $("$nvim_bin" --version | head -1)"
PYTHON=$python timeout 300 "$nvim_bin" --headless --clean -c "luafile editors/nvim/tests/plugin_test.lua"
