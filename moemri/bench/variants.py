"""What a benchmark column is: a method at one of the expert counts it offers, so the one-expert
version of every mixture of experts stands beside the full one."""
from __future__ import annotations

from dataclasses import dataclass

from ..methods.base import Method


@dataclass(frozen=True)
class Variant:
    method: Method
    experts: int | None

    @property
    def label(self) -> str:
        if len(self.method.info.expert_counts) == 1:
            return self.method.info.name
        return f"{self.method.info.name} K={self.experts}"

    @property
    def classical(self) -> bool:
        return self.method.info.classical

    @property
    def info(self):  # what the timing table reads
        return self.method.info

    def run(self, volume, device: str, options=None):
        return self.method.run(volume, experts=self.experts, device=device, options=options)


def variants(methods) -> list[Variant]:
    out = []
    for m in methods:
        counts = m.info.expert_counts
        out += [Variant(m, None)] if len(counts) == 1 else [Variant(m, k) for k in sorted(counts, reverse=True)]
    return out
