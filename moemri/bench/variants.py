"""What a benchmark column is: a method at one of the expert counts it offers, so the one-expert
version of every mixture of experts stands beside the full one, and, for a method with a per-scan
check or adaptation (REMIx), its full version with that switched off or on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..methods.base import Method


@dataclass(frozen=True)
class Variant:
    method: Method
    experts: int | None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        name = self.method.info.name
        if len(self.method.info.expert_counts) > 1:
            name += f" K={self.experts}"
        return name + "".join(f" {k}={v}" for k, v in self.options)

    @property
    def classical(self) -> bool:
        return self.method.info.classical

    @property
    def info(self):  # what the timing table reads
        return self.method.info

    def run(self, volume, device: str, options=None):
        return self.method.run(volume, experts=self.experts, device=device, options={**(options or {}), **dict(self.options)})


BENCH_ADAPT_STEPS = 20


def variants(methods) -> list[Variant]:
    out = []
    for m in methods:
        counts = m.info.expert_counts
        out += [Variant(m, None)] if len(counts) == 1 else [Variant(m, k) for k in sorted(counts, reverse=True)]
        names = {o.name: o for o in m.info.options}
        if "correction" in names:  # the experts' whole correction, as the networks give it
            out.append(Variant(m, m.info.default_experts, (("correction", "full"),)))
        if "adapt_steps" in names:
            steps = names["adapt_steps"].default or BENCH_ADAPT_STEPS
            out.append(Variant(m, m.info.default_experts, (("adapt_steps", steps),)))
    return out
