-- Smalltalk comments are "double quoted"; strings are 'single quoted'.
vim.bo.commentstring = '"%s"'
