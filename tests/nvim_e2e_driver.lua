-- Drives a real headless Neovim with the plugin in editors/nvim against the real
-- `smalltalk-lsp serve` (tests/test_nvim_e2e.py starts it and reads what it wrote).
--
-- E2E_ARGS (JSON): [results file, plugin folder, server executable, project root, file to open,
-- initializationOptions]. Steps run one after another from the main loop, so typed keys and
-- server messages are processed between them as they are for a user. Each step records what
-- the editor showed; the first step that times out or raises writes `error` and ends the run.

local out_path, plugin, server, root, file, init_options = unpack(vim.fn.json_decode(os.getenv('E2E_ARGS')))
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false

local uv = vim.uv or vim.loop
local results = { steps = {}, notifications = {} }
local started = uv.now()

-- What the plugin and Neovim tell the user (errors included) goes into the results.
vim.notify = function(msg, level)
  table.insert(results.notifications, { message = tostring(msg), level = level })
end

local function finish(err)
  results.error = err
  results.seconds = (uv.now() - started) / 1000
  vim.fn.writefile({ vim.fn.json_encode(results) }, out_path)
  vim.cmd('qa!')
end

local steps = {}
local function step(name, fn)
  table.insert(steps, { name = name, fn = fn })
end

local function run(i)
  if i > #steps then
    return finish(nil)
  end
  local s = steps[i]
  local t0 = uv.now()
  local ok, err = pcall(s.fn, function()
    table.insert(results.steps, { name = s.name, seconds = (uv.now() - t0) / 1000 })
    vim.schedule(function()
      run(i + 1)
    end)
  end)
  if not ok then
    finish(s.name .. ' raised: ' .. tostring(err))
  end
end

--- Calls `next(value)` once `pred()` returns a value; ends the run after `ms`.
local function wait_for(name, ms, pred, next)
  local deadline = uv.now() + ms
  local timer = uv.new_timer()
  timer:start(0, 100, vim.schedule_wrap(function()
    if timer:is_closing() then
      return
    end
    local ok, value = pcall(pred)
    if ok and value then
      timer:stop()
      timer:close()
      local nok, err = pcall(next, value)
      if not nok then
        finish(name .. ': ' .. tostring(err))
      end
    elseif uv.now() > deadline then
      timer:stop()
      timer:close()
      finish(name .. ' timed out' .. (ok and '' or (': ' .. tostring(value))))
    end
  end))
end

local st = require('smalltalk_lsp')
st.setup({ cmd = { server, 'serve' }, root_dir = root, init_options = init_options })
vim.cmd('edit ' .. vim.fn.fnameescape(file))
local source_buf = vim.api.nvim_get_current_buf()
results.filetype = vim.bo.filetype

local client

local function request(method, params, timeout_ms)
  local resp = vim.lsp.buf_request_sync(source_buf, method, params, timeout_ms or 10000) or {}
  local r = resp[client.id]
  return r and r.result
end

local function at(line, col)
  return { textDocument = { uri = vim.uri_from_bufnr(source_buf) }, position = { line = line, character = col } }
end

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

local function feed(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), 'm', false)
end

step('client initialized', function(next)
  wait_for('client initialized', 60000, function()
    local c = st.get_client(source_buf)
    return c and c.initialized and c
  end, function(c)
    client = c
    results.root = client.config.root_dir
    next()
  end)
end)

-- `SRStore class >> named: aString [` (0-based line 19): hover on the class name. The
-- workspace scan runs after initialize, so ask until the answer names the class.
step('hover on SRStore', function(next)
  wait_for('hover on SRStore', 60000, function()
    local hover = request('textDocument/hover', at(19, 2))
    local contents = hover and hover.contents
    local text = type(contents) == 'table' and (contents.value or vim.fn.json_encode(contents)) or contents
    results.hover = text
    return text and text:find('abstract store', 1, true) and text
  end, next)
end)

-- `self registry at: aString put: store.` (0-based line 24): definition of `registry`.
step('definition of registry', function(next)
  local defs = request('textDocument/definition', at(24, 8))
  if defs and defs.uri then
    defs = { defs }
  end
  results.definition = {}
  for _, d in ipairs(defs or {}) do
    local uri = d.uri or d.targetUri
    local range = d.range or d.targetSelectionRange
    table.insert(results.definition, { path = vim.uri_to_fname(uri), line = range.start.line })
  end
  next()
end)

step('models ready', function(next)
  wait_for('models ready', 240000, function()
    local status = st.status[client.id]
    local models = status and status.models or {}
    results.models = models
    results.statusline = st.statusline(source_buf)
    return models.coder == 'ready' and models.reasoner == 'ready'
  end, next)
end)

-- vim.lsp.buf.code_action() as a user runs it: the list offered in vim.ui.select (recorded), the
-- chosen action resolved, its command run, and the note the server shows opened beside.
local function code_action_menu(line, col, choose, done)
  local original = vim.ui.select
  vim.ui.select = function(items, opts, on_choice)
    vim.ui.select = original
    local offered, chosen = {}, nil
    for _, item in ipairs(items) do
      table.insert(offered, { title = opts.format_item(item), kind = item.action.kind })
      if item.action.title == choose then
        chosen = item
      end
    end
    done(offered)
    on_choice(chosen)
  end
  vim.api.nvim_win_set_cursor(0, { line + 1, col })
  vim.lsp.buf.code_action()
end

step('code actions in a comment', function(next)
  -- `"Forget every right whose licence ended before aDate"` (0-based line 43).
  code_action_menu(43, 5, nil, function(offered)
    results.actions_in_comment = offered
    next()
  end)
end)

step('Explain from the code action menu', function(next)
  local windows = #vim.api.nvim_tabpage_list_wins(0)
  -- `SRStore >> isEmpty [` (0-based line 49).
  code_action_menu(49, 12, 'Explain', function(offered)
    results.actions_on_method = offered
  end)
  wait_for('the explanation opened beside', 180000, function()
    local name = vim.api.nvim_buf_get_name(0)
    return name:match('%.md$') and #vim.api.nvim_tabpage_list_wins(0) == windows + 1 and name
  end, function(name)
    local buf = vim.api.nvim_get_current_buf()
    results.explanation = {
      path = name,
      filetype = vim.bo[buf].filetype,
      text = buffer_text(buf),
      windows = #vim.api.nvim_tabpage_list_wins(0),
      windows_before = windows,
    }
    vim.cmd('close')
    next()
  end)
end)

step(':SmalltalkTests writes a test class', function(next)
  vim.api.nvim_set_current_buf(source_buf)
  vim.api.nvim_win_set_cursor(0, { 50, 12 })
  vim.cmd('SmalltalkTests')
  local target = root .. '/StreamingRights-Tests/SRStoreGeneratedTest.class.st'
  wait_for('the test class created', 180000, function()
    local buf = vim.fn.bufnr(target)
    return buf > 0 and vim.api.nvim_buf_is_loaded(buf) and buffer_text(buf):find('SRStoreGeneratedTest', 1, true) and buf
  end, function(buf)
    results.tests = { path = target, text = buffer_text(buf), on_disk = vim.fn.filereadable(target) == 1 }
    next()
  end)
end)

-- Ghost text from vim.lsp.inline_completion in a new method's empty body, accepted with the
-- plugin's key (<Tab>). The same request asked directly first gives the suggestion to expect.
step('inline completion accepted with <Tab>', function(next)
  vim.api.nvim_set_current_buf(source_buf)
  local before = vim.api.nvim_buf_get_lines(source_buf, 0, -1, false)
  vim.api.nvim_buf_set_lines(source_buf, -1, -1, false, { '', '{ #category : #testing }', 'SRStore >> hasRights [', '', '\t', ']' })
  local line = vim.api.nvim_buf_line_count(source_buf) - 1 -- the `\t` line, 1-based
  vim.api.nvim_win_set_cursor(0, { line, 1 })
  local asked = request('textDocument/inlineCompletion', {
    textDocument = { uri = vim.uri_from_bufnr(source_buf) },
    position = { line = line - 1, character = 1 },
    context = { triggerKind = 1 },
  }, 120000) -- a cold prompt on a busy machine takes more than the default 10 s
  local items = asked and (asked.items or asked) or {}
  results.inline = { before = before, line = line, asked = items[1] and items[1].insertText or nil }
  local ns = vim.api.nvim_create_namespace('nvim.lsp.inline_completion')
  feed('A')
  wait_for('ghost text shown', 120000, function()
    local marks = vim.api.nvim_buf_get_extmarks(source_buf, ns, 0, -1, { details = true })
    return marks[1]
  end, function(mark)
    local shown = {}
    for _, chunk in ipairs(mark[4].virt_text or {}) do
      table.insert(shown, chunk[1])
    end
    for _, virt_line in ipairs(mark[4].virt_lines or {}) do
      local parts = {}
      for _, chunk in ipairs(virt_line) do
        table.insert(parts, chunk[1])
      end
      table.insert(shown, '\n' .. table.concat(parts))
    end
    results.inline.ghost = table.concat(shown)
    results.inline.mode = vim.api.nvim_get_mode().mode
    local changed = vim.b[source_buf].changedtick
    feed('<Tab>')
    wait_for('the suggestion accepted', 10000, function()
      return vim.b[source_buf].changedtick ~= changed and #vim.api.nvim_buf_get_extmarks(source_buf, ns, 0, -1, {}) == 0
    end, function()
      results.inline.after = vim.api.nvim_buf_get_lines(source_buf, 0, -1, false)
      feed('<Esc>')
      next()
    end)
  end)
end)

run(1)
