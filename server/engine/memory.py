"""Memory plan: what each role needs in RAM (weights, KV cache, compute buffers) against what
the machine has. Roles on the same file count its weights once. A plan that does not fit is
refused before llama.cpp tries (and the machine starts swapping)."""

from __future__ import annotations

from collections.abc import Sequence

import psutil
from pydantic import BaseModel, Field

from server.engine.gguf_info import GGUFInfo

MB = 1024 * 1024


class RoleNeeds(BaseModel):
    role: str
    path: str
    n_ctx: int
    n_batch: int
    weights_bytes: int
    # The role whose load already counts these weights, if any.
    shares_weights_with: str | None = None
    kv_bytes: int
    compute_bytes: int

    @property
    def total_bytes(self) -> int:
        weights = 0 if self.shares_weights_with else self.weights_bytes
        return weights + self.kv_bytes + self.compute_bytes


class MemoryPlan(BaseModel):
    roles: list[RoleNeeds] = Field(default_factory=list)
    needed_bytes: int = 0
    available_bytes: int = 0
    total_bytes: int = 0

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def describe(self) -> list[str]:
        lines = []
        for need in self.roles:
            shared = (
                f"weights shared with {need.shares_weights_with}"
                if need.shares_weights_with
                else f"weights {need.weights_bytes / MB:.0f} MiB"
            )
            lines.append(
                f"{need.role}: {shared}, KV cache {need.kv_bytes / MB:.0f} MiB (n_ctx "
                f"{need.n_ctx}), compute {need.compute_bytes / MB:.0f} MiB -> "
                f"{need.total_bytes / MB:.0f} MiB"
            )
        verdict = "fits" if self.fits else "DOES NOT FIT"
        lines.append(
            f"total {self.needed_bytes / MB:.0f} MiB needed, {self.available_bytes / MB:.0f} MiB "
            f"available of {self.total_bytes / MB:.0f} MiB: {verdict}"
        )
        return lines


def role_needs(
    role: str, info: GGUFInfo, n_ctx: int, n_batch: int, shares_with: str | None = None
) -> RoleNeeds:
    # The engine never makes a context longer than the model was trained for.
    n_ctx = min(n_ctx, info.context_length or n_ctx)
    n_embd = int(info.arch_value("embedding_length", 0) or 0)
    n_vocab = info.array_lengths.get("tokenizer.ggml.tokens", 0)
    # Activations of one ubatch (a rough, generous factor measured on Gemma 3 and Llama
    # shapes) plus the single row of logits the engine reads.
    compute = n_batch * n_embd * 4 * 20 + n_vocab * 4 * 2
    return RoleNeeds(
        role=role,
        path=info.path,
        n_ctx=n_ctx,
        n_batch=n_batch,
        weights_bytes=info.file_size,
        shares_weights_with=shares_with,
        kv_bytes=n_ctx * info.kv_bytes_per_token(),
        compute_bytes=compute,
    )


def plan_memory(needs: Sequence[RoleNeeds], available: int | None = None) -> MemoryPlan:
    memory = psutil.virtual_memory()
    return MemoryPlan(
        roles=list(needs),
        needed_bytes=sum(need.total_bytes for need in needs),
        available_bytes=memory.available if available is None else available,
        total_bytes=memory.total,
    )
