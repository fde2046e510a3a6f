#!/usr/bin/env bash
# The whole test suite: lint, type-check, then pytest (unit and end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -rs "$@"
# The editor clients: VS Code extension (npm ci, compile, lint, test, package) and Neovim plugin.
bash editors/check.sh
