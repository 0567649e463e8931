"""The gate's soft assignment as 3-D volumes: one probability map per expert.

A method may return `MethodResult.expert_probabilities`, the gate's weight of every expert at
every voxel on the output grid, either as a list of 3-D Volumes in expert order (what the core
documents and the background worker returns) or as one object with a 4-D (expert, z, y, x)
`array` and the grid's `spacing`, `origin` and `direction`. Front ends show 3-D volumes, so
`probability_volumes` gives the list either way.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .base import MethodResult


def probability_volumes(result: MethodResult) -> list[Volume]:
    """One 3-D probability Volume per expert of `result`, in the order of `result.experts`."""
    stack = result.expert_probabilities
    if stack is None:
        return []
    if isinstance(stack, (list, tuple)):
        volumes = list(stack)
    else:
        array = np.asarray(stack.array)
        if array.ndim != 4:
            raise InputError(f"expert probabilities must be a 4-D (expert, z, y, x) array, not {array.ndim}-D")
        volumes = [Volume(array[e], stack.spacing, stack.origin, stack.direction) for e in range(array.shape[0])]
    if len(volumes) != len(result.experts):
        raise InputError(f"{len(volumes)} expert probability maps for {len(result.experts)} experts")
    return volumes
