"""The in-process model engine: models by role (weights shared per file), one llama.cpp
context and one inference worker per role, GGUF inspection and the memory plan.

Importing this package does not import llama.cpp; loading a model does.
"""
