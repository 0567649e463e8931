"""`make train-remix` on the shared loop: a tiny run stopped at its first checkpoint and started
again with the same command finishes every stage, and its exported networks (canonical frame,
spacing channels) run through the `remix` method."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moemri.train import remix as trainer

TINY = ["--base-steps", "4", "--finetune-steps", "2", "--validate-every", "2", "--validation-per-bin", "1",
        "--patch", "16", "--heads", "colin27", "--export"]


def test_tiny_run_resumes_after_an_interruption_and_exports(tmp_path):
    args = TINY + ["--checkpoints", str(tmp_path / "ck"), "--out", str(tmp_path / "out")]
    assert trainer.main(args + ["--minutes", "0"]) == 3  # stopped at the first validation
    saved = torch.load(tmp_path / "ck" / "base.ckpt", weights_only=False)
    assert saved["step"] == 2 and not saved["finished"]
    assert trainer.main(args) == 0  # the same command continues
    log = (tmp_path / "ck" / "train.log").read_text()
    assert "resumed at step 2/4" in log
    history = json.loads((tmp_path / "ck" / "base.history.json").read_text())
    assert [h["step"] for h in history] == [0, 2, 4] and all("score" in h for h in history)
    assert not list((tmp_path / "ck").glob("*.ckpt"))  # finished stages keep only their best weights
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"]
    assert set(manifest) == {f"remix_bin{b}.pt" for b in range(1, 8)} | {"remix_one_network.pt"}
    assert manifest["remix_bin3.pt"]["in_channels"] == 4

    from moemri.methods.remix.method import Remix
    from moemri.volume import Volume

    rng = np.random.default_rng(0)
    low = Volume(rng.random((8, 24, 24), dtype=np.float32) + 1.0, spacing=(1.0, 1.0, 3.0))
    result = Remix(tmp_path / "out").run(low, options={"spacing": (1.0, 1.0, 1.0)})
    assert result.image.array.shape == (24, 24, 24) and np.isfinite(result.image.array).all()
    assert result.metadata["selected_expert"] == "3 mm3 expert"


def test_the_loss_ssim_is_monais():
    # The training loss keeps a separable SSIM for speed; it must be the field's SSIM.
    import torch
    from monai.losses import SSIMLoss

    from moemri.train.remix import _gaussian_window, ssim

    rng = torch.Generator().manual_seed(0)
    x = torch.rand((2, 1, 24, 24, 24), generator=rng)
    y = (x + 0.1 * torch.randn(x.shape, generator=rng)).clamp(0, 1)
    monai = SSIMLoss(spatial_dims=3, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5, k1=0.01, k2=0.03)
    assert float(1 - ssim(x, y, _gaussian_window())) == pytest.approx(float(monai(x, y)), abs=1e-5)
    assert float(1 - ssim(x, x, _gaussian_window())) == pytest.approx(0.0, abs=1e-5)
