" Highlighting for filetype smalltalk: Vim's own Smalltalk syntax (syntax/st.vim).
if exists('b:current_syntax')
  finish
endif
runtime! syntax/st.vim
let b:current_syntax = 'smalltalk'
