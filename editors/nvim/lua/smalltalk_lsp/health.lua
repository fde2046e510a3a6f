-- :checkhealth smalltalk_lsp

local M = {}

-- vim.health (0.10+) / vim.health.report_* (0.8, 0.9) / require('health') (0.7)
local health = vim.health or require('health')
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local report_error = health.error or health.report_error
local info = health.info or health.report_info

--- Runs a command, returns (exit code, output) or (nil, reason); at most `timeout_ms`.
local function run(cmd, timeout_ms)
  if vim.system then
    local okc, proc = pcall(vim.system, cmd, { text = true })
    if not okc then
      return nil, tostring(proc)
    end
    local result = proc:wait(timeout_ms)
    return result.code, (result.stdout or '') .. (result.stderr or '')
  end
  local output = vim.fn.system(cmd)
  return vim.v.shell_error, output
end

local function lines(text)
  return vim.split(vim.trim(text or ''), '\n', { plain = true })
end

function M.check()
  local plugin = require('smalltalk_lsp')
  local v = vim.version()
  local version = string.format('%d.%d.%d', v.major, v.minor, v.patch)

  start('Neovim')
  if vim.fn.has('nvim-0.11') == 1 then
    ok('Neovim ' .. version .. ': vim.lsp.config / vim.lsp.enable')
  else
    warn('Neovim ' .. version .. ': started through vim.lsp.start; 0.11+ is recommended')
  end
  if vim.lsp.inline_completion then
    ok('inline completion (vim.lsp.inline_completion) available')
  else
    info('inline completion needs Neovim 0.12+; hover, code actions and completion work without it')
  end

  start('Server command')
  local path = vim.api.nvim_buf_get_name(0)
  local cmd = plugin.options.cmd or plugin.find_cmd(plugin.find_root(path))
  local exe = cmd[1]
  local resolved = vim.fn.exepath(exe)
  if resolved == '' then
    report_error(
      string.format('`%s` not found or not executable', exe),
      { 'Create the venv: python -m venv .venv && .venv/bin/pip install -e <smalltalk-lsp checkout>',
        "or pass cmd = { '/path/to/smalltalk-lsp', 'serve' } to setup()" }
    )
    return
  end
  ok('command: ' .. table.concat(cmd, ' ') .. (plugin.options.cmd and ' (from setup)' or ' (found)'))

  start('Python')
  -- The interpreter beside a venv's script, else python3 on PATH.
  local python = vim.fn.fnamemodify(resolved, ':h') .. '/python'
  if vim.fn.executable(python) ~= 1 then
    python = vim.fn.exepath('python3')
  end
  if python == '' then
    warn('no Python interpreter found')
  else
    local code, out = run({ python, '--version' }, 10000)
    if code == 0 then
      ok(python .. ': ' .. vim.trim(out))
    else
      warn(python .. ' --version failed: ' .. tostring(out))
    end
  end

  start('smalltalk-lsp doctor')
  local code, out = run({ resolved, 'doctor' }, 60000)
  if code == 0 then
    ok('`smalltalk-lsp doctor` passed')
    for _, line in ipairs(lines(out)) do
      info(line)
    end
  elseif code == nil then
    warn('could not run `smalltalk-lsp doctor`: ' .. tostring(out))
  else
    warn('`smalltalk-lsp doctor` exited with ' .. tostring(code))
    for _, line in ipairs(lines(out)) do
      info(line)
    end
  end

  start('Running server')
  local client = plugin.get_client(0)
  if not client then
    info('no smalltalk-lsp client attached to the current buffer')
  else
    ok(string.format('client %d, root %s', client.id, tostring(client.config.root_dir)))
    local status = plugin.status[client.id]
    if status then
      for role, state in pairs(status.models or {}) do
        local report = (state == 'failed') and warn or ok
        report(string.format('model %s: %s', role, tostring(state)))
      end
      local adapters = status.adapters or {}
      info('active adapters: ' .. (#adapters > 0 and table.concat(adapters, ', ') or 'none'))
    else
      info('no smalltalk/status received yet')
    end
  end
end

return M
