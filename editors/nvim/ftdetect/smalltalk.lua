-- *.st (Tonel, chunk, GNU Smalltalk; also .class.st, .extension.st, .cs.st, .pck.st) -> smalltalk
if vim.filetype and vim.filetype.add and vim.fn.has('nvim-0.8') == 1 then
  vim.filetype.add({ extension = { st = 'smalltalk' } })
else
  -- Neovim 0.7: a plain autocommand, run after the built-in `setf st`.
  vim.cmd([[autocmd BufRead,BufNewFile *.st set filetype=smalltalk]])
end
