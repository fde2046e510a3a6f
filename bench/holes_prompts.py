"""What each context configuration costs in prompt tokens, on the holes of bench_holes.py.

    .venv/bin/python bench/holes_prompts.py [--holes 60] [--model PATH]

No generation: the prompts the server would build at each hole (its own context and prompt
stages over the workspace bench_holes.py indexed, the retrieval index and embedder loaded in
process) are tokenized with the model's vocabulary, once per configuration; and the same for
the peer's prompt (llama.vscode's window as llama-server's /infill cuts it: at most
3/4 of the batch of prefix tokens, 1/4 of suffix tokens, with -b 1024). Prompt processing
dominates a suggestion's latency on CPU, so this is the cost side of the ablation table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_holes import CACHE, CORPUS, N_PREFIX, N_SUFFIX  # noqa: E402
from holes_corpus import build_workspace, select_holes  # noqa: E402
from peer import default_coder_path  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "no project context": {"sources": []},
    "default sources, repository layout": {},
    "default sources, text layout": {"repository": False},
    "+ class": {"sources": ["class", "implementors", "similar", "lexical", "recent"]},
    "+ siblings": {"sources": ["siblings", "implementors", "similar", "lexical", "recent"]},
    "implementors only": {"sources": ["implementors"]},
    "similar + lexical only": {"sources": ["similar", "lexical"]},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holes", type=int, default=60)
    parser.add_argument("--model", default=None, help="GGUF (default: the default coder)")
    args = parser.parse_args()

    from llama_cpp import Llama

    from server.completion.context import build_context
    from server.completion.prompt import build_prompt
    from server.completion.types import CompletionRequest
    from server.config import Settings
    from server.engine.types import FimTokens
    from server.project_model import ProjectModel
    from server.retrieval.context import RetrievalContextProvider
    from server.retrieval.embedder import load_embedder
    from server.retrieval.index import RetrievalIndex
    from smalltalk_grammar import parse_path

    all_holes = select_holes(CORPUS)
    holes = all_holes[: args.holes]
    root = build_workspace(CORPUS, all_holes, CACHE)
    settings = Settings()
    llm = Llama(model_path=str(args.model or default_coder_path()), vocab_only=True, verbose=False)
    fim = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
                    "<|repo_name|>", "<|file_sep|>")
    project = ProjectModel(parse_path(root))
    index = RetrievalIndex(root, load_embedder(settings.models.embeddings, threads=1))

    def count(text: str) -> int:
        return len(llm.tokenize(text.encode(), add_bos=False, special=True))

    c = settings.completion
    budget = settings.retrieval.context_tokens
    sizes: dict[str, list[int]] = {name: [] for name in [*CONFIGS, "peer (llama.vscode)"]}
    for hole in holes:
        path = str(root / "src" / hole.path)
        request = CompletionRequest("file://" + path, hole.text, hole.offset, path=path)
        for name, config in CONFIGS.items():
            sources = config.get("sources", c.context_sources)
            provider = RetrievalContextProvider(lambda: project, lambda: index,
                                                lambda: budget, sources=lambda s=sources: s)
            ctx = build_context(request, [provider], c.prefix_chars, c.suffix_chars)
            prompt = build_prompt(ctx, fim, c.max_tokens_line, c.max_tokens_block, budget * 4,
                                  config.get("repository", True))
            sizes[name].append(count(prompt.text))
        lines = hole.text.split("\n")
        line = lines[hole.line]
        prefix = "\n".join(lines[max(0, hole.line - N_PREFIX): hole.line]) + "\n"
        suffix = line[hole.character:] + "\n" + "\n".join(
            lines[hole.line + 1: hole.line + 1 + N_SUFFIX]) + "\n"
        prompt_line = line[: hole.character] if line[: hole.character].strip() else ""
        peer = (min(count(prefix), 768) + min(count(suffix), 256 - 2 - count(prompt_line))
                + count(prompt_line) + count("<|repo_name|>myproject\n<|file_sep|>filename\n")
                + 3)
        sizes["peer (llama.vscode)"].append(peer)
    index.close()
    print(f"{len(holes)} holes; prompt tokens (Qwen2.5-Coder vocabulary), "
          f"retrieval.context_tokens {budget}, file window {c.prefix_chars}/{c.suffix_chars} "
          "characters")
    print("| prompt | median tokens | mean tokens | max tokens |")
    print("|---|---|---|---|")
    for name, values in sizes.items():
        print(f"| {name} | {statistics.median(values):.0f} | {statistics.mean(values):.0f} | "
              f"{max(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
