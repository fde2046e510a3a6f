"""Subcommands of the `smalltalk-lsp` command line (see server.cli)."""
