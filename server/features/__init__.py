"""LSP features, one module each; every module has `setup(ls)` (see server.lsp.FEATURES)."""
