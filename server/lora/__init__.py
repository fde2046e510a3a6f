"""LoRA adapters while the server runs: the catalogue of adapter files and their manifests, and
the manager that picks the active set of a role for a file. The engine side is
`server.engine.lora` (loading into a model, a context's set, KV snapshots per set) and
`server.engine.lora_validation` (the checks a file passes before llama.cpp reads it); training
adapters is the `adapters` package, built on the server.
"""
