"""The shared training loop: a stopped and resumed run ends exactly where an uninterrupted one does,
the best validated weights are kept, and a checkpoint of another run is refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moemri.train.loop import Schedule, best_weights, load_checkpoint, train


class LineFit:
    """Fit y = 3x - 1 from noisy samples drawn with the loop's generator; validation = -MSE."""

    name = "line-fit"

    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.x_val = torch.linspace(-1, 1, 50)[:, None]

    def modules(self):
        return {"model": self.model}

    def parameters(self):
        return list(self.model.parameters())

    def step(self, step, rng):
        x = torch.from_numpy(rng.uniform(-1, 1, (16, 1)).astype(np.float32))
        y = 3 * x - 1 + 0.1 * torch.from_numpy(rng.standard_normal((16, 1)).astype(np.float32))
        loss = torch.mean((self.model(x) - y) ** 2)
        return loss, {"mse": float(loss)}

    def validate(self):
        mse = float(torch.mean((self.model(self.x_val) - (3 * self.x_val - 1)) ** 2))
        return {"score": -mse, "mse": mse}


SCHEDULE = Schedule(steps=60, learning_rate=0.3, validate_every=10, seed=3)


def test_resumed_run_matches_uninterrupted(tmp_path):
    whole = LineFit()
    done = train(whole, SCHEDULE, tmp_path / "whole.pt", progress=False)
    assert done.finished and done.step == 60
    assert done.best["mse"] < 0.05  # it learned the line

    part = LineFit()
    first = train(part, SCHEDULE, tmp_path / "part.pt", minutes=1e-6, progress=False)
    assert not first.finished and first.step == 10
    assert load_checkpoint(tmp_path / "part.pt")["step"] == 10
    resumed = LineFit()  # a fresh process: new objects, same checkpoint
    second = train(resumed, SCHEDULE, tmp_path / "part.pt", progress=False)
    assert second.finished and second.step == 60
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert [h["step"] for h in second.history] == [0, 10, 20, 30, 40, 50, 60]  # 0: the starting weights
    assert second.best_step == done.best_step


def test_best_validated_weights_are_kept(tmp_path):
    task = LineFit()
    outcome = train(task, SCHEDULE, tmp_path / "c.pt", progress=False)
    best = min(outcome.history, key=lambda h: h["mse"])
    assert outcome.best_step == best["step"]
    state = best_weights(tmp_path / "c.pt")["model"]
    for name, value in task.model.state_dict().items():
        assert torch.equal(state[name], value)  # the task ends holding the best weights


def test_checkpoint_of_another_run_is_refused(tmp_path):
    train(LineFit(), SCHEDULE, tmp_path / "c.pt", minutes=1e-6, progress=False)
    other = Schedule(steps=80, learning_rate=0.3, validate_every=10)
    with pytest.raises(ValueError, match="another run"):
        train(LineFit(), other, tmp_path / "c.pt", progress=False)


def test_zero_minutes_only_loads_the_checkpoint(tmp_path):
    train(LineFit(), SCHEDULE, tmp_path / "c.pt", minutes=1e-6, progress=False)
    again = train(LineFit(), SCHEDULE, tmp_path / "c.pt", minutes=0, progress=False)
    assert not again.finished and again.step == 10 and again.history[-1]["step"] == 10
