-- smalltalk-lsp for Neovim: starts `smalltalk-lsp serve` for Smalltalk buffers, enables inline
-- completion (Neovim 0.12+), and adds :SmalltalkExplain / Design / Implement / Tests / Adapters.
--
--   require('smalltalk_lsp').setup({})
--
-- Neovim 0.11+: vim.lsp.config + vim.lsp.enable. Older (0.7 - 0.10): vim.lsp.start (or
-- vim.lsp.start_client on 0.7) from a FileType autocommand.

local M = {}

M.name = 'smalltalk_lsp'

M.kinds = {
  explain = 'refactor.smalltalk.explain',
  design = 'refactor.smalltalk.design',
  implement = 'refactor.smalltalk.implement',
  tests = 'refactor.smalltalk.tests',
  comment = 'refactor.smalltalk.comment',
}

M.defaults = {
  -- Full command line; nil: `.venv/bin/smalltalk-lsp serve` found upward from the project,
  -- else `smalltalk-lsp serve` on PATH.
  cmd = nil,
  filetypes = { 'smalltalk', 'st' },
  -- Upward search for the project root, as Neovim's own `root_markers`: earlier entries win,
  -- a nested list holds markers of equal priority (the nearest folder wins). A Tonel or
  -- FileTree package folder is never the root; without markers, the folder above it (or the
  -- file's folder).
  root_markers = { { '.git', '.project', 'src/.properties' }, '.smalltalk-lsp' },
  -- A fixed project root (a path), or function(path) -> root; takes precedence over markers.
  root_dir = nil,
  -- Sent as initializationOptions, in the server's layout:
  -- { models = { code_generation = ..., reasoning = ..., embeddings = ... },
  --   cpu_settings = { threads = ..., batch_size = ..., context_length = ... },
  --   completion = { max_generate_ms = ... }, adapters = { active = { ... } } }
  init_options = nil,
  -- Sent as workspace/didChangeConfiguration {settings = ...} after start (same layout).
  settings = nil,
  -- Projects (and the folders below them) whose own models, adapters and .venv server may be
  -- used. Any other project is untrusted unless its smalltalk-lsp.toml is trusted through
  -- vim.secure (:trust, or the prompt when it is first read); :SmalltalkTrust trusts it now.
  trusted_roots = {},
  -- Neovim 0.12+: ghost text from vim.lsp.inline_completion.
  inline_completion = true,
  -- Insert-mode key that accepts the shown inline completion; without one it types itself.
  -- false: no mapping.
  accept_key = '<Tab>',
  -- Create :SmalltalkExplain, :SmalltalkDesign, :SmalltalkImplement, :SmalltalkTests,
  -- :SmalltalkAdapters.
  commands = true,
  -- Show and refresh the "N senders · M implementors" code lens on method headers.
  code_lens = true,
  -- Highlight the variable, selector or class under the cursor when it rests (CursorHold);
  -- the server also starts the suggestion for that place then (completion.warm_on_cursor).
  highlight_on_hold = true,
  -- Open Markdown documents the server shows (explanations) in a vertical split.
  markdown_split = true,
  capabilities = nil,
  on_attach = nil,
}

M.options = vim.deepcopy(M.defaults)

--- Last `smalltalk/status` notification per client id.
M.status = {}

local uv = vim.uv or vim.loop
local is_windows = vim.fn.has('win32') == 1

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

local function notify(msg, level)
  vim.notify('smalltalk-lsp: ' .. msg, level or vim.log.levels.INFO)
end

local function dirname(path)
  return vim.fn.fnamemodify(path, ':h')
end

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

--- Directory to start upward searches from: a file's folder, or the folder itself.
local function start_dir(path)
  if path == nil or path == '' then
    return uv.cwd()
  end
  path = vim.fn.fnamemodify(path, ':p')
  local stat = uv.fs_stat(path)
  if stat and stat.type == 'directory' then
    return (path:gsub('[/\\]$', ''))
  end
  return dirname(path)
end

--- Calls fn(dir) for `dir` and each of its parents until fn returns a value.
local function upward(dir, fn)
  while dir and dir ~= '' do
    local found = fn(dir)
    if found ~= nil then
      return found
    end
    local parent = dirname(dir)
    if parent == dir then
      return nil
    end
    dir = parent
  end
  return nil
end

--- The server executable inside a `.venv` in `dir`, or nil.
function M.venv_executable(dir)
  local exe = is_windows and (dir .. '\\.venv\\Scripts\\smalltalk-lsp.exe') or (dir .. '/.venv/bin/smalltalk-lsp')
  if vim.fn.executable(exe) == 1 then
    return exe
  end
  return nil
end

--- The command that starts the server for a file or folder at `path`:
--- `<dir>/.venv/bin/smalltalk-lsp serve` for the nearest such dir upward, else
--- `smalltalk-lsp serve` (on PATH). With `root` given and untrusted, a `.venv` inside the
--- project is a program the project supplies: the search starts above it.
function M.find_cmd(path, root)
  local from = start_dir(path)
  if root ~= nil and not M.is_trusted(root) then
    from = dirname(start_dir(root))
  end
  local exe = upward(from, M.venv_executable)
  return { exe or 'smalltalk-lsp', 'serve' }
end

local function normalize(path)
  return (vim.fn.fnamemodify(path, ':p'):gsub('[/\\]$', ''))
end

--- True if the project at `root` may supply models, adapters and its own server: it lies in
--- one of `trusted_roots`, or its smalltalk-lsp.toml is trusted in Neovim's trust database
--- (vim.secure, Neovim 0.9+; reading an unknown file asks the user once).
function M.is_trusted(root)
  local dir = normalize(root)
  for _, entry in ipairs(M.options.trusted_roots or {}) do
    local trusted = normalize(vim.fn.expand(entry))
    if dir == trusted or dir:sub(1, #trusted + 1) == trusted .. '/' then
      return true
    end
  end
  local toml = dir .. '/smalltalk-lsp.toml'
  if vim.secure and vim.secure.read and exists(toml) then
    return vim.secure.read(toml) ~= nil
  end
  return false
end

--- initializationOptions for a project: the configured ones and its trust state.
function M.init_options_for(root)
  local options = vim.deepcopy(M.options.init_options or {})
  options.trust = vim.tbl_extend('force', options.trust or {}, { workspace = M.is_trusted(root) })
  return options
end

--- Whether `dir` is a package folder (Tonel `package.st`, FileTree `*.package`), or a folder
--- inside a FileTree package: never a project root.
local function in_package(dir)
  return exists(dir .. '/package.st') or dir:match('%.package$') ~= nil or dir:match('%.package[/\\]') ~= nil
end

--- The project root for a file: the nearest folder upward holding a marker of the first entry
--- of `markers` found (see `root_markers`), package folders skipped; else the file's folder,
--- or the folder above its package.
function M.find_root(path, markers)
  local fixed = M.options.root_dir
  if type(fixed) == 'string' and fixed ~= '' then
    return (vim.fn.fnamemodify(fixed, ':p'):gsub('[/\\]$', ''))
  elseif type(fixed) == 'function' then
    local root = fixed(path)
    if root then
      return root
    end
  end
  local dir = start_dir(path)
  for _, entry in ipairs(markers or M.options.root_markers) do
    local group = type(entry) == 'table' and entry or { entry }
    local root = upward(dir, function(d)
      if in_package(d) then
        return nil
      end
      for _, marker in ipairs(group) do
        if exists(d .. '/' .. marker) then
          return d
        end
      end
      return nil
    end)
    if root then
      return root
    end
  end
  return upward(dir, function(d)
    return not in_package(d) and d or nil
  end) or dir
end

-- Client helpers that work on 0.7 - 0.12 (`client:request` replaced `client.request` in 0.11).

local function client_request(client, method, params, handler, bufnr)
  if has('0.11') then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function supports(client, method)
  if has('0.11') then
    return client:supports_method(method)
  end
  return client.supports_method(method)
end

--- The smalltalk-lsp client attached to `bufnr` (default: current buffer), or nil.
function M.get_client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local clients
  if vim.lsp.get_clients then
    clients = vim.lsp.get_clients({ bufnr = bufnr, name = M.name })
  else
    clients = {}
    for _, c in pairs(vim.lsp.buf_get_clients(bufnr)) do
      if c.name == M.name then
        table.insert(clients, c)
      end
    end
  end
  return clients[1]
end

local function with_client(fn)
  local client = M.get_client(0)
  if not client then
    notify('no smalltalk-lsp server is attached to this buffer', vim.log.levels.WARN)
    return
  end
  return fn(client)
end

-- Handlers -----------------------------------------------------------------------------------

local function is_markdown(uri)
  local path = (uri or ''):gsub('[?#].*$', '')
  return path:lower():match('%.md$') ~= nil or path:lower():match('%.markdown$') ~= nil
end

local function show_document(err, result, ctx, config)
  if M.options.markdown_split and result and not result.external and is_markdown(result.uri) then
    local fname = vim.uri_to_fname(result.uri)
    vim.cmd('vsplit ' .. vim.fn.fnameescape(fname))
    if result.selection then
      local line = result.selection.start.line + 1
      pcall(vim.api.nvim_win_set_cursor, 0, { line, 0 })
    end
    if result.takeFocus == false then
      vim.cmd('wincmd p')
    end
    return { success = true }
  end
  local default = vim.lsp.handlers['window/showDocument']
  if default then
    return default(err, result, ctx, config)
  end
  return { success = false }
end

local function on_status(_, result, ctx)
  if type(result) == 'table' then
    -- Fields a notification leaves out keep their last value.
    local status = M.status[ctx.client_id] or {}
    for _, key in ipairs({ 'models', 'names', 'indexing', 'adapters', 'completion' }) do
      if result[key] ~= nil then
        status[key] = result[key] ~= vim.NIL and result[key] or nil
      end
    end
    M.status[ctx.client_id] = status
    vim.api.nvim_exec_autocmds('User', { pattern = 'SmalltalkStatus', modeline = false })
  end
end

--- A short text for a statusline:
--- `st: coder ready (qwen2.5-coder-0.5b), reasoner loading (qwen2.5-coder-1.5b) [adapter]`,
--- with the suggestion in flight (`..., thinking 512/1400`).
function M.statusline(bufnr)
  local client = M.get_client(bufnr or 0)
  local status = client and M.status[client.id]
  if not status then
    return client and 'st: starting' or ''
  end
  local parts = {}
  local names = type(status.names) == 'table' and status.names or {}
  for role, state in pairs(status.models or {}) do
    local name = names[role]
    local shown = (type(name) == 'string' and name ~= 'off') and (' (' .. name .. ')') or ''
    table.insert(parts, role .. ' ' .. tostring(state) .. shown)
  end
  table.sort(parts)
  local text = 'st: ' .. table.concat(parts, ', ')
  if type(status.indexing) == 'string' and status.indexing ~= '' then
    text = text .. ', indexing'
  end
  local thinking = M.completion_text(status.completion)
  if thinking then
    text = text .. ', ' .. thinking
  end
  if type(status.adapters) == 'table' and #status.adapters > 0 then
    text = text .. ' [' .. table.concat(status.adapters, ', ') .. ']'
  end
  return text
end

--- What the statusline says about a suggestion in flight (the server's `completion` field):
--- `thinking 512/1400`, `writing`, `waiting for the coder`; nil when none is.
function M.completion_text(completion)
  if type(completion) ~= 'table' then
    return nil
  end
  local state = completion.state
  if state == 'thinking' then
    if type(completion.total) == 'number' and completion.total > 0 then
      return ('thinking %d/%d'):format(tonumber(completion.done) or 0, completion.total)
    end
    return 'thinking'
  elseif state == 'queued' then
    return 'thinking (queued)'
  elseif state == 'writing' then
    return 'writing'
  elseif state == 'waiting-for-model' then
    return 'waiting for the coder'
  end
  return nil
end

-- Inline completion ---------------------------------------------------------------------------

local function enable_inline_completion(client, bufnr)
  local ic = vim.lsp.inline_completion
  if not (M.options.inline_completion and ic and ic.enable) then
    return
  end
  if not supports(client, 'textDocument/inlineCompletion') then
    return
  end
  ic.enable(true, { bufnr = bufnr })
  local key = M.options.accept_key
  if key and key ~= '' then
    vim.keymap.set('i', key, function()
      if ic.get({ bufnr = bufnr }) then
        return ''
      end
      return key
    end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'Accept the Smalltalk inline completion' })
  end
end

--- The code lens command ("N senders · M implementors"): the references at its position.
local function show_references(command)
  local uri, at = command.arguments[1], command.arguments[2]
  local bufnr = vim.uri_to_bufnr(uri)
  vim.fn.bufload(bufnr)
  vim.api.nvim_win_set_buf(0, bufnr)
  vim.api.nvim_win_set_cursor(0, { at.line + 1, at.character })
  vim.lsp.buf.references()
end

local function on_attach(client, bufnr)
  enable_inline_completion(client, bufnr)
  vim.lsp.commands['smalltalk.showReferences'] = show_references
  if M.options.code_lens and vim.lsp.codelens then
    vim.lsp.codelens.refresh({ bufnr = bufnr })
    vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave', 'BufWritePost' }, {
      buffer = bufnr,
      callback = function()
        vim.lsp.codelens.refresh({ bufnr = bufnr })
      end,
    })
  end
  if M.options.highlight_on_hold and client.server_capabilities.documentHighlightProvider then
    vim.api.nvim_create_autocmd({ 'CursorHold', 'CursorHoldI' }, {
      buffer = bufnr,
      callback = function()
        vim.lsp.buf.clear_references()
        vim.lsp.buf.document_highlight()
      end,
    })
    vim.api.nvim_create_autocmd('CursorMoved', {
      buffer = bufnr,
      callback = function()
        vim.lsp.buf.clear_references()
      end,
    })
  end
  if M.options.on_attach then
    M.options.on_attach(client, bufnr)
  end
end

-- Code actions --------------------------------------------------------------------------------

local function apply_action(client, action, bufnr, done)
  local function finish(err, info)
    if done then
      done(err, action, info)
    elseif err then
      notify(tostring(err.message or err), vim.log.levels.ERROR)
    end
  end
  if action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding or 'utf-16')
  end
  local command = action.command
  if type(command) == 'table' then
    client_request(client, 'workspace/executeCommand', {
      command = command.command,
      arguments = command.arguments,
    }, function(err, result)
      finish(err, result)
    end, bufnr)
  else
    finish(nil, nil)
  end
end

local function pick_action(actions, kind)
  local first
  for _, action in ipairs(actions or {}) do
    local k = action.kind
    if not action.disabled and type(k) == 'string' and (k == kind or k:sub(1, #kind + 1) == kind .. '.') then
      if action.isPreferred then
        return action
      end
      first = first or action
    end
  end
  return first
end

--- Requests code actions of `kind` (e.g. 'refactor.smalltalk.explain') at the cursor or the
--- given 0-based range and applies the first (preferred) one. `done(err, action, result)` is
--- called at the end (tests use it); without it, errors are notified.
function M.code_action(kind, opts)
  opts = opts or {}
  local bufnr = vim.api.nvim_get_current_buf()
  local client = M.get_client(bufnr)
  if not client then
    local err = { message = 'no smalltalk-lsp server is attached to this buffer' }
    if opts.done then
      return opts.done(err)
    end
    return notify(err.message, vim.log.levels.WARN)
  end
  local params
  if vim.lsp.util.make_given_range_params and opts.range then
    params = vim.lsp.util.make_given_range_params(opts.range.start, opts.range['end'], bufnr, client.offset_encoding)
  else
    params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  end
  params.context = { diagnostics = {}, only = { kind }, triggerKind = 1 }
  client_request(client, 'textDocument/codeAction', params, function(err, result)
    if err then
      if opts.done then
        return opts.done(err)
      end
      return notify(tostring(err.message), vim.log.levels.ERROR)
    end
    local action = pick_action(result, kind)
    if not action then
      local none = { message = 'no ' .. kind .. ' action here' }
      if opts.done then
        return opts.done(none)
      end
      return notify(none.message .. ': place the cursor in a method or class')
    end
    if not action.edit and not action.command and supports(client, 'codeAction/resolve') then
      client_request(client, 'codeAction/resolve', action, function(rerr, resolved)
        if rerr then
          if opts.done then
            return opts.done(rerr)
          end
          return notify(tostring(rerr.message), vim.log.levels.ERROR)
        end
        apply_action(client, resolved or action, bufnr, opts.done)
      end, bufnr)
    else
      apply_action(client, action, bufnr, opts.done)
    end
  end, bufnr)
end

-- Adapters ------------------------------------------------------------------------------------

local function format_adapter(a)
  local parts = { (a.active and '* ' or '  ') .. a.name }
  if a.base_architecture then
    table.insert(parts, a.base_architecture)
  end
  if type(a.scale) == 'number' then
    table.insert(parts, 'scale ' .. a.scale)
  end
  if a.error and a.error ~= vim.NIL then
    table.insert(parts, 'error: ' .. tostring(a.error))
  end
  return table.concat(parts, '  ')
end

--- Lists the server's LoRA adapters with vim.ui.select and activates the chosen one.
function M.pick_adapter()
  with_client(function(client)
    client_request(client, 'workspace/executeCommand', { command = 'smalltalk.adapters.list', arguments = {} }, function(err, result)
      if err then
        return notify(tostring(err.message), vim.log.levels.ERROR)
      end
      local adapters = {}
      for _, a in ipairs(type(result) == 'table' and result or {}) do
        if type(a) == 'table' and type(a.name) == 'string' then
          table.insert(adapters, a)
        end
      end
      if #adapters == 0 then
        return notify('no LoRA adapters found for this project')
      end
      vim.ui.select(adapters, { prompt = 'Activate a LoRA adapter', format_item = format_adapter }, function(choice)
        if not choice then
          return
        end
        client_request(client, 'workspace/executeCommand', {
          command = 'smalltalk.adapters.activate',
          arguments = { choice.name },
        }, function(aerr)
          if aerr then
            return notify(tostring(aerr.message), vim.log.levels.ERROR)
          end
          notify('activated adapter ' .. choice.name)
        end)
      end)
    end)
  end)
end

local function create_commands()
  local function range_of(args)
    if args.range and args.range > 0 then
      local last = vim.api.nvim_buf_get_lines(0, args.line2 - 1, args.line2, false)[1] or ''
      return { start = { args.line1, 0 }, ['end'] = { args.line2, #last } }
    end
    return nil
  end
  local commands = {
    SmalltalkExplain = M.kinds.explain,
    SmalltalkDesign = M.kinds.design,
    SmalltalkImplement = M.kinds.implement,
    SmalltalkTests = M.kinds.tests,
    SmalltalkComment = M.kinds.comment,
  }
  for name, kind in pairs(commands) do
    vim.api.nvim_create_user_command(name, function(args)
      M.code_action(kind, { range = range_of(args) })
    end, { range = true, desc = 'smalltalk-lsp: ' .. kind })
  end
  vim.api.nvim_create_user_command('SmalltalkAdapters', M.pick_adapter, { desc = 'smalltalk-lsp: choose a LoRA adapter' })
  -- Navigation Neovim has no default mapping for.
  local nav = {
    SmalltalkSenders = function() vim.lsp.buf.incoming_calls() end,
    SmalltalkSends = function() vim.lsp.buf.outgoing_calls() end,
    SmalltalkSuperclasses = function() vim.lsp.buf.typehierarchy('supertypes') end,
    SmalltalkSubclasses = function() vim.lsp.buf.typehierarchy('subtypes') end,
    SmalltalkRename = function() vim.lsp.buf.rename() end,
    SmalltalkHighlight = function() vim.lsp.buf.document_highlight() end,
    SmalltalkCodeLens = function() vim.lsp.codelens.run() end,
    -- A rename of thousands of senders reports progress (vim.lsp.status()) and stops here.
    SmalltalkCancel = function() M.cancel() end,
  }
  for name, fn in pairs(nav) do
    vim.api.nvim_create_user_command(name, fn, { desc = 'smalltalk-lsp: ' .. name })
  end
  vim.api.nvim_create_user_command('SmalltalkTrust', function()
    M.trust()
  end, { desc = "smalltalk-lsp: trust this project's models and adapters" })
end

--- Cancels what the server is still working on for this buffer's client (a long rename, a
--- code action): `$/cancelRequest` for each pending request, which the server answers with
--- RequestCancelled, applying nothing. Returns how many were cancelled.
function M.cancel(bufnr)
  local client = M.get_client(bufnr or 0)
  local ids = {}
  for id, request in pairs(client and client.requests or {}) do
    if request.type == 'pending' then
      table.insert(ids, id)
    end
  end
  for _, id in ipairs(ids) do
    client:cancel_request(id)
  end
  notify(#ids > 0 and ('cancelled ' .. #ids .. ' request(s)') or 'nothing to cancel')
  return #ids
end

--- Trusts the current buffer's project: remembers it (vim.secure for its smalltalk-lsp.toml,
--- and `trusted_roots` for this session) and tells the running server, which then loads the
--- project's models and adapters without a restart.
function M.trust(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local root = M.find_root(vim.api.nvim_buf_get_name(bufnr), M.options.root_markers)
  local toml = root .. '/smalltalk-lsp.toml'
  if vim.secure and vim.secure.trust and exists(toml) then
    pcall(vim.secure.trust, { action = 'allow', path = toml })
  end
  table.insert(M.options.trusted_roots, root)
  local client = M.get_client(bufnr)
  if client then
    local settings = vim.tbl_deep_extend('force', M.options.settings or {}, { trust = { workspace = true } })
    client.notify('workspace/didChangeConfiguration', { settings = settings })
  end
  notify('trusted ' .. root)
  return root
end

-- Registration --------------------------------------------------------------------------------

--- The client configuration for a file at `path` (used on Neovim < 0.11, and by tests).
function M.client_config(path)
  local o = M.options
  local root = M.find_root(path, o.root_markers)
  return {
    name = M.name,
    cmd = o.cmd or M.find_cmd(root, root),
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = root } },
    init_options = M.init_options_for(root),
    settings = o.settings,
    capabilities = o.capabilities,
    handlers = {
      ['window/showDocument'] = show_document,
      ['smalltalk/status'] = on_status,
    },
    on_attach = on_attach,
    -- Neovim 0.8+ sends the settings after initialize by itself; 0.7 does not.
    on_init = (not has('0.8') and o.settings) and function(client)
      client.notify('workspace/didChangeConfiguration', { settings = o.settings })
    end or nil,
  }
end

local function register_lsp_config()
  local o = M.options
  local cmd = o.cmd
  if cmd == nil then
    -- Resolved when the server starts, from the project root (0.12 passes the config).
    cmd = function(dispatchers, config)
      local from = (config and config.root_dir) or vim.api.nvim_buf_get_name(0)
      local resolved = M.find_cmd(from, from)
      return vim.lsp.rpc.start(resolved, dispatchers, { cwd = config and config.root_dir or nil })
    end
  end
  vim.lsp.config(M.name, {
    cmd = cmd,
    filetypes = o.filetypes,
    root_dir = function(bufnr, on_dir)
      on_dir(M.find_root(vim.api.nvim_buf_get_name(bufnr), o.root_markers))
    end,
    init_options = o.init_options,
    before_init = function(params, config)
      params.initializationOptions = M.init_options_for(config.root_dir or uv.cwd())
    end,
    settings = o.settings,
    capabilities = o.capabilities,
    handlers = {
      ['window/showDocument'] = show_document,
      ['smalltalk/status'] = on_status,
    },
    on_attach = on_attach,
  })
  vim.lsp.enable(M.name)
end

local legacy_clients = {}

local function start_legacy(bufnr)
  local path = vim.api.nvim_buf_get_name(bufnr)
  local config = M.client_config(path)
  if vim.lsp.start then
    vim.lsp.start(config, { bufnr = bufnr })
    return
  end
  -- Neovim 0.7: one client per root, remembered here (get_active_clients() does not list a
  -- client before its initialize answer, and the FileType event fires for `st`, then `smalltalk`).
  local id = legacy_clients[config.root_dir]
  local client = id and vim.lsp.get_client_by_id(id)
  if not client or client.is_stopped() then
    id = vim.lsp.start_client(config)
    legacy_clients[config.root_dir] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
end

local function add_filetype()
  if vim.filetype and vim.filetype.add and has('0.8') then
    vim.filetype.add({ extension = { st = 'smalltalk' } })
  else
    vim.cmd([[augroup smalltalk_lsp_ftdetect
      autocmd!
      autocmd BufRead,BufNewFile *.st set filetype=smalltalk
    augroup END]])
  end
end

--- Sets the plugin up. Calling it again replaces the options.
function M.setup(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  if opts and opts.cmd ~= nil then
    M.options.cmd = opts.cmd -- a list, not merged with anything
  end
  add_filetype()
  if M.options.commands then
    create_commands()
  end
  if vim.lsp.config and vim.lsp.enable and has('0.11') then
    register_lsp_config()
  else
    local group = vim.api.nvim_create_augroup('smalltalk_lsp', { clear = true })
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      pattern = M.options.filetypes,
      callback = function(args)
        start_legacy(args.buf)
      end,
    })
    -- Buffers already open when setup runs.
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.tbl_contains(M.options.filetypes, vim.bo[buf].filetype) then
        start_legacy(buf)
      end
    end
  end
end

return M
