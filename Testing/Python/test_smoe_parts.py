"""The SMoE's building blocks on the shipped backbone: front + tail is the whole network, routed
tails give exactly the weighted sum of every tail, the gate's descriptors ignore noise level, and
the EM assignment respects each expert's capacity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moemri.methods.smoe import weights as weight_files
from moemri.methods.smoe.dncnn import DnCNN
from moemri.methods.smoe.tails import ExpertTails, split


@pytest.fixture(scope="module")
def backbone():
    state, entry = weight_files.load(weight_files.BACKBONE)
    model = DnCNN(**entry["parameters"]["architecture"])
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def slices(sample_volume):
    from moemri.intensity import normalise
    from moemri.masks import head_mask

    a = np.asarray(sample_volume.array, np.float32)
    normalised, _ = normalise(a, head_mask(a))
    return torch.from_numpy(normalised[88:93][None].copy())  # one 5-slice stack, (1, 5, 233, 197)


@pytest.mark.parametrize("tail_layers", [3, 1, 7])
def test_front_and_tail_are_the_whole_network(backbone, slices, tail_layers):
    sigma = torch.full((1, 1) + slices.shape[2:], 0.03)
    x = DnCNN.inputs(slices, sigma)
    front, tail = split(backbone, tail_layers)
    with torch.no_grad():
        whole = backbone(x)
        parts = ExpertTails([tail]).one(0, front(x))
    assert torch.allclose(whole, parts, atol=1e-5)
    assert not any(p.requires_grad for p in front.parameters())
    assert sum(isinstance(m, torch.nn.Conv2d) for m in tail) == tail_layers
    with pytest.raises(ValueError, match="tail layers"):
        split(backbone, backbone.depth)


def test_routed_tails_equal_the_weighted_sum_of_all_tails(backbone, slices):
    front, tail = split(backbone)
    tails = ExpertTails.copies(tail, 3)
    torch.manual_seed(0)
    with torch.no_grad():
        for t in tails.tails[1:]:
            for p in t.parameters():
                p.add_(0.05 * torch.randn_like(p) * p.abs().mean())
        features = front(DnCNN.inputs(slices, torch.full((1, 1) + slices.shape[2:], 0.03)))
        h, w = features.shape[2:]
        weights = torch.zeros((1, 3, h, w))
        weights[:, 0, :, :100] = 1.0  # expert 1 on the left, 2 and 3 share the right half
        weights[:, 1, :, 100:] = 0.25
        weights[:, 2, :, 100:] = 0.75
        expected = (tails.all(features) * weights).sum(1)
        routed = tails.routed(features, weights)
    assert torch.allclose(routed, expected, atol=1e-6)


def test_gate_descriptors_describe_anatomy_not_noise(slices):
    from moemri.methods.smoe.anatomy import patch_anatomy

    rng = np.random.default_rng(0)
    centre = slices[:, 2]
    depth = torch.where(centre > 0.05, 10.0, 0.0)
    clean, _, _, _ = patch_anatomy(centre, depth)
    noisy_centre = torch.from_numpy(np.hypot(centre.numpy() + 0.09 * rng.standard_normal(centre.shape), 0.09 * rng.standard_normal(centre.shape)).astype(np.float32))
    noisy, _, _, _ = patch_anatomy(noisy_centre, depth)
    spread = clean.reshape(-1, clean.shape[-1]).std(0)
    shift = (noisy - clean).reshape(-1, clean.shape[-1]).abs().mean(0)
    # 9 % Rician noise moves the intensity, tissue-share and depth descriptors by well under their
    # spread across patches (the edge density, the most noise-sensitive, by under its spread).
    assert torch.all(shift[[0, 1, 2, 4, 5]] < 0.25 * spread[[0, 1, 2, 4, 5]]), (shift, spread)
    assert shift[3] < spread[3]


def test_balanced_assignment_caps_every_expert():
    from moemri.train.smoe import balanced_argmax

    scores = torch.zeros((12, 3))
    scores[:, 0] = 1.0  # everyone prefers expert 1 ...
    scores[:4, 0] = 3.0  # ... these four most of all
    scores[4:8, 1] = 0.5  # these four have expert 2 as their second choice
    scores[8:, 2] = 0.5  # and these expert 3
    labels = balanced_argmax(scores, capacity=4)
    assert torch.bincount(labels, minlength=3).tolist() == [4, 4, 4]
    assert labels[:4].tolist() == [0] * 4  # the strongest preferences are served first
    assert labels[4:].tolist() == [1] * 4 + [2] * 4  # the overflow goes to each row's next best
