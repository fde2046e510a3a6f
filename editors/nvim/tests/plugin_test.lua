-- The plugin in a real headless Neovim against tests/stub_server.py (no models needed).
--
--   nvim --headless --clean -c 'luafile editors/nvim/tests/plugin_test.lua'
--
-- Env: PYTHON (default python3), STUB_LOG (file the stub writes what it receives to).
-- Prints one line per check and `N passed, N failed`; exits 1 when a check failed.
-- Checks run as steps from the main loop, so typed keys and server messages are processed
-- between them as they are for a user.

local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
local plugin_dir = vim.fn.fnamemodify(here, ':h')
local repo = vim.fn.fnamemodify(plugin_dir, ':h:h')
local python = os.getenv('PYTHON') or 'python3'
local stub_log = os.getenv('STUB_LOG') or vim.fn.tempname()
vim.env.STUB_LOG = stub_log

vim.opt.runtimepath:prepend(plugin_dir)
vim.opt.swapfile = false

local uv = vim.uv or vim.loop
local passed, failed = 0, 0
local function check(name, cond, detail)
  if cond then
    passed = passed + 1
    io.stdout:write('ok   ' .. name .. '\n')
  else
    failed = failed + 1
    io.stdout:write('FAIL ' .. name .. (detail and ('  -- ' .. vim.inspect(detail)) or '') .. '\n')
  end
end

local function finish()
  io.stdout:write(string.format('%d passed, %d failed\n', passed, failed))
  vim.cmd((failed == 0 and passed > 0) and 'qa!' or 'cq!')
end

local steps = {}
local function step(name, fn)
  table.insert(steps, { name = name, fn = fn })
end

local function run(i)
  if i > #steps then
    return finish()
  end
  local s = steps[i]
  local okc, err = pcall(s.fn, function()
    vim.schedule(function()
      run(i + 1)
    end)
  end)
  if not okc then
    check(s.name .. ' (raised)', false, err)
    finish()
  end
end

--- Calls `next` once `pred()` holds, or records a failure after `ms` and stops.
local function wait_for(name, pred, ms, next)
  local deadline = uv.now() + ms
  local timer = uv.new_timer()
  timer:start(0, 50, vim.schedule_wrap(function()
    local okp, value = pcall(pred)
    if okp and value then
      timer:stop()
      timer:close()
      next(value)
    elseif uv.now() > deadline then
      timer:stop()
      timer:close()
      check(name .. ' (timed out)', false, okp and value or value)
      finish()
    end
  end))
end

local function stub_messages(method)
  local out = {}
  if vim.fn.filereadable(stub_log) == 0 then
    return out
  end
  for _, line in ipairs(vim.fn.readfile(stub_log)) do
    local msg = vim.json.decode(line)
    if msg.method == method then
      table.insert(out, msg)
    end
  end
  return out
end

local st = require('smalltalk_lsp')
local file = repo .. '/tests/fixtures/sample/tonel/StreamingRights-Core/SRStore.class.st'
local client

-- Plain functions ------------------------------------------------------------------------------

step('find_cmd', function(next)
  local tmp = vim.fn.tempname()
  vim.fn.mkdir(tmp .. '/proj/.venv/bin', 'p')
  vim.fn.mkdir(tmp .. '/proj/src/pkg', 'p')
  local exe = tmp .. '/proj/.venv/bin/smalltalk-lsp'
  vim.fn.writefile({ '#!/bin/sh' }, exe)
  local nothing = st.find_cmd(tmp .. '/proj/src/pkg/Foo.st')
  check('find_cmd: no executable .venv script -> smalltalk-lsp on PATH', nothing[1] == 'smalltalk-lsp', nothing)
  vim.fn.setfperm(exe, 'rwxr-xr-x')
  local found = st.find_cmd(tmp .. '/proj/src/pkg/Foo.st')
  check('find_cmd: .venv found upward from the file', found[1] == exe and found[2] == 'serve', found)
  vim.fn.writefile({ '' }, tmp .. '/proj/.smalltalk-lsp')
  check('find_root: nearest marker upward', st.find_root(tmp .. '/proj/src/pkg/Foo.st') == tmp .. '/proj')
  st.options.root_dir = tmp .. '/proj/src/'
  check('find_root: a fixed root_dir wins', st.find_root(tmp .. '/proj/src/pkg/Foo.st') == tmp .. '/proj/src')
  st.options.root_dir = nil
  check('find_root: the file folder without markers', st.find_root('/nonexistent-dir/x/Foo.st', { '.nothing-here' }) == '/nonexistent-dir/x')
  -- A Tonel repository without .git: Pharo's .project (or src/.properties) marks its root, and
  -- a package folder is never the root (not even with a stale .smalltalk-lsp in it).
  local repo_root = tmp .. '/tonel-repo'
  vim.fn.mkdir(repo_root .. '/src/Pkg-Core/.smalltalk-lsp', 'p')
  vim.fn.writefile({ 'package' }, repo_root .. '/src/Pkg-Core/package.st')
  vim.fn.writefile({ "{ #format : #tonel }" }, repo_root .. '/src/.properties')
  local in_pkg = repo_root .. '/src/Pkg-Core/Foo.class.st'
  check('find_root: src/.properties marks a Tonel root', st.find_root(in_pkg) == repo_root, st.find_root(in_pkg))
  vim.fn.writefile({ "{ 'srcDirectory' : 'src' }" }, repo_root .. '/.project')
  vim.fn.delete(repo_root .. '/src/.properties')
  check('find_root: .project marks a Tonel root', st.find_root(in_pkg) == repo_root, st.find_root(in_pkg))
  vim.fn.delete(repo_root .. '/.project')
  check('find_root: without markers, the folder above the package', st.find_root(in_pkg) == repo_root .. '/src', st.find_root(in_pkg))
  next()
end)

step('trust', function(next)
  local tmp = vim.fn.tempname()
  vim.fn.mkdir(tmp .. '/proj/.venv/bin', 'p')
  local exe = tmp .. '/proj/.venv/bin/smalltalk-lsp'
  vim.fn.writefile({ '#!/bin/sh' }, exe)
  vim.fn.setfperm(exe, 'rwxr-xr-x')
  local proj = tmp .. '/proj'
  check('trust: a project is untrusted by default', not st.is_trusted(proj))
  local cmd = st.find_cmd(proj .. '/Foo.st', proj)
  check("trust: an untrusted project's .venv server is not run", cmd[1] ~= exe, cmd)
  check('trust: initializationOptions say untrusted', st.init_options_for(proj).trust.workspace == false)
  st.options.trusted_roots = { tmp }
  check('trust: a folder below a trusted root is trusted', st.is_trusted(proj))
  check('trust: ... and runs its .venv server', st.find_cmd(proj .. '/Foo.st', proj)[1] == exe)
  check('trust: initializationOptions say trusted', st.init_options_for(proj).trust.workspace == true)
  st.options.trusted_roots = { tmp .. '/pro' }
  check('trust: a sibling with a common prefix is not', not st.is_trusted(proj))
  st.options.trusted_roots = {}
  next()
end)

-- Setup, filetype, client --------------------------------------------------------------------

step('setup and open a Tonel file', function(next)
  st.setup({
    cmd = { python, here .. '/stub_server.py' },
    root_markers = { '.gitattributes' },
    init_options = { models = { code_generation = 'stub-coder' }, cpu_settings = { threads = 2 } },
    settings = { completion = { max_generate_ms = 300 } },
  })
  vim.cmd('edit ' .. vim.fn.fnameescape(file))
  check('*.st gets filetype smalltalk', vim.bo.filetype == 'smalltalk', vim.bo.filetype)
  check('commentstring is "%s"', vim.bo.commentstring == '"%s"', vim.bo.commentstring)
  for _, name in ipairs({ 'SmalltalkExplain', 'SmalltalkDesign', 'SmalltalkImplement', 'SmalltalkTests', 'SmalltalkAdapters',
    'SmalltalkSenders', 'SmalltalkSends', 'SmalltalkSuperclasses', 'SmalltalkSubclasses', 'SmalltalkRename',
    'SmalltalkHighlight', 'SmalltalkCodeLens', 'SmalltalkCancel' }) do
    check(':' .. name .. ' exists', vim.fn.exists(':' .. name) == 2)
  end
  wait_for('client attaches', function()
    local c = st.get_client(0)
    return c and c.initialized and c
  end, 15000, function(c)
    client = c
    check('client root is the sample folder', c.config.root_dir == repo .. '/tests/fixtures/sample', c.config.root_dir)
    next()
  end)
end)

step('initializationOptions and settings reach the server', function(next)
  wait_for('didChangeConfiguration sent', function()
    return #stub_messages('workspace/didChangeConfiguration') > 0
  end, 5000, function()
    check('one server for the project', #stub_messages('initialize') == 1, #stub_messages('initialize'))
    local init = stub_messages('initialize')[1]
    check('initializationOptions in the server layout', vim.deep_equal(init.params.initializationOptions,
      { models = { code_generation = 'stub-coder' }, cpu_settings = { threads = 2 }, trust = { workspace = false } }),
      init.params.initializationOptions)
    local change = stub_messages('workspace/didChangeConfiguration')[1]
    check('didChangeConfiguration carries settings', vim.deep_equal(change.params.settings, { completion = { max_generate_ms = 300 } }),
      change.params)
    next()
  end)
end)

step('smalltalk/status feeds the statusline', function(next)
  wait_for('status received', function()
    return st.status[client.id]
  end, 5000, function()
    check('statusline', st.statusline() == 'st: coder ready (qwen2.5-coder-0.5b), reasoner loading (qwen2.5-coder-1.5b)', st.statusline())
    check('thinking with progress', st.completion_text({ state = 'thinking', done = 512, total = 1400 }) == 'thinking 512/1400')
    check('waiting for the model', st.completion_text({ state = 'waiting-for-model' }) == 'waiting for the coder')
    check('idle says nothing', st.completion_text({ state = 'idle' }) == nil)
    next()
  end)
end)

step('hover', function(next)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local responses = vim.lsp.buf_request_sync(0, 'textDocument/hover', params, 5000) or {}
  local value = responses[client.id] and responses[client.id].result and responses[client.id].result.contents.value
  check('hover answered', value and value:match('^stub hover') ~= nil, responses)
  next()
end)

step('a resting cursor asks for its highlights', function(next)
  local before = #stub_messages('textDocument/documentHighlight')
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  vim.api.nvim_exec_autocmds('CursorHold', { buffer = 0, modeline = false })
  wait_for('documentHighlight sent on CursorHold', function()
    return #stub_messages('textDocument/documentHighlight') > before
  end, 5000, function()
    local sent = stub_messages('textDocument/documentHighlight')[before + 1]
    check('... at the cursor', sent.params.position.line == 2 and sent.params.position.character == 0,
      sent.params.position)
    next()
  end)
end)

step(':SmalltalkRename asks the server, :SmalltalkCancel cancels it', function(next)
  local original = vim.ui.input
  vim.ui.input = function(_, on_confirm)
    on_confirm('renamed')
  end
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  vim.cmd('SmalltalkRename')
  vim.ui.input = original
  wait_for('rename sent', function()
    return #stub_messages('textDocument/rename') > 0
  end, 5000, function()
    local rename = stub_messages('textDocument/rename')[1]
    check('rename carries the new name', rename.params.newName == 'renamed', rename.params)
    vim.cmd('SmalltalkCancel')
    wait_for('cancel sent', function()
      return #stub_messages('$/cancelRequest') > 0
    end, 5000, function()
      local cancel = stub_messages('$/cancelRequest')[1]
      check('the pending rename is the one cancelled', cancel.params.id == rename.id, { cancel, rename.id })
      check('nothing left to cancel', st.cancel() == 0)
      next()
    end)
  end)
end)

step(':SmalltalkComment applies the edit', function(next)
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  vim.cmd('SmalltalkComment')
  wait_for('comment inserted', function()
    return vim.api.nvim_buf_get_lines(0, 2, 3, false)[1] == '"stub comment"'
  end, 5000, function()
    vim.cmd('silent! undo')
    next()
  end)
end)

step(':SmalltalkExplain resolves, runs the command, opens the Markdown beside', function(next)
  local wins = #vim.api.nvim_tabpage_list_wins(0)
  vim.api.nvim_win_set_cursor(0, { 5, 0 })
  vim.cmd('SmalltalkExplain')
  wait_for('markdown split opened', function()
    return vim.api.nvim_buf_get_name(0):match('%.md$') ~= nil
  end, 5000, function()
    check('a new window', #vim.api.nvim_tabpage_list_wins(0) == wins + 1)
    local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
    check('explanation of the right kind and line', text:match('refactor%.smalltalk%.explain at line 4') ~= nil, text)
    local req = stub_messages('textDocument/codeAction')
    check('codeAction asked with only = explain', vim.deep_equal(req[#req].params.context.only, { 'refactor.smalltalk.explain' }), req[#req])
    check('the action was resolved first', #stub_messages('codeAction/resolve') == 1)
    vim.cmd('close')
    next()
  end)
end)

step(':SmalltalkAdapters lists and activates', function(next)
  local original = vim.ui.select
  local shown
  vim.ui.select = function(items, opts, on_choice)
    shown = { items = items, text = opts.format_item(items[2]) }
    on_choice(items[2])
  end
  vim.cmd('SmalltalkAdapters')
  wait_for('adapter activated', function()
    local s = st.status[client.id]
    return s and s.adapters and s.adapters[1] == 'tests'
  end, 5000, function()
    vim.ui.select = original
    check('both adapters offered', shown and #shown.items == 2, shown)
    check('item text', shown and shown.text:match('tests%s+gemma3%s+scale 1') ~= nil, shown and shown.text)
    local calls = stub_messages('workspace/executeCommand')
    check('activate called with the name', vim.deep_equal(calls[#calls].params, { command = 'smalltalk.adapters.activate', arguments = { 'tests' } }), calls[#calls])
    check('statusline keeps the models and shows the adapter', st.statusline() == 'st: coder ready (qwen2.5-coder-0.5b), reasoner loading (qwen2.5-coder-1.5b) [tests]', st.statusline())
    next()
  end)
end)

if vim.lsp.inline_completion then
  step('inline completion shows ghost text and <Tab> accepts it', function(next)
    vim.api.nvim_buf_set_lines(0, -1, -1, false, { '', 'SRStore >> stub [', '\t', ']' })
    local line = vim.api.nvim_buf_line_count(0) - 1
    vim.api.nvim_win_set_cursor(0, { line, 1 })
    local ns = vim.api.nvim_create_namespace('nvim.lsp.inline_completion')
    vim.api.nvim_feedkeys('a', 'n', false)
    wait_for('ghost text shown', function()
      return #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {}) > 0
    end, 8000, function()
      vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('<Tab>', true, false, true), 'm', false)
      wait_for('completion accepted', function()
        return vim.api.nvim_buf_get_lines(0, line - 1, line, false)[1] == '\t^ name'
      end, 5000, function()
        check('accepted into the buffer', true)
        -- Without a suggestion the key types itself.
        vim.lsp.inline_completion.enable(false, { bufnr = 0 })
        vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('<Tab>x', true, false, true), 'm', false)
        wait_for('plain <Tab> typed', function()
          return vim.api.nvim_buf_get_lines(0, line - 1, line, false)[1] == '\t^ name\tx'
        end, 5000, function()
          check('<Tab> without a suggestion inserts a tab', true)
          vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('<Esc>', true, false, true), 'n', false)
          next()
        end)
      end)
    end)
  end)
end

run(1)
