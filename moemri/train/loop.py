"""The one training loop every method trains on: a model-specific step plugged into shared seeding,
learning-rate schedule, periodic validation with the best checkpoint kept, a log, a progress bar and
resume from a checkpoint.

A training run is a `Task` (what to optimise, one step's loss, a validation score) and a
`Schedule` (steps, learning rate, how often to validate). `train(task, schedule, checkpoint)` runs
it. Every `validate_every` steps the task is scored on its validation cases (held-back cases of the
validation head, never training patches), the best-scoring weights are kept, and a checkpoint is
written atomically: model, optimiser, schedule, the random state of the sampler, the best weights
and the validation history. Called again with the same checkpoint path, the loop continues from
there, so one long run can be spread over several sessions (`--minutes` stops it cleanly at a
checkpoint; SIGTERM and Ctrl-C do the same). A resumed run draws the same batches as an
uninterrupted one would have: the sampler's generator state is in the checkpoint.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

log = logging.getLogger("moemri.train")

CHECKPOINT_VERSION = 1


class Task(Protocol):
    """What a method supplies. `step` returns the loss of one batch drawn with `rng` (only that
    generator: its state is what a checkpoint restores) and a dict of named loss terms for the log;
    `validate` returns named scores, higher is better, including `score`, the one that picks the
    best checkpoint."""

    name: str

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def step(self, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self) -> dict[str, float]: ...


@dataclass
class Schedule:
    steps: int
    learning_rate: float
    warmup_share: float = 0.05  # linear warm-up over this share of the steps
    final_share: float = 0.05  # cosine decay to this share of the peak learning rate
    validate_every: int = 250
    clip_norm: float | None = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    validate_first: bool = True  # score the starting weights too (a fine-tune that only hurts keeps them)

    def rate(self, step: int) -> float:
        """Multiplier of the peak rate at `step` (0-based): warm-up, then cosine."""
        warm = max(1, int(self.warmup_share * self.steps))
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, self.steps - warm)
        return self.final_share + (1 - self.final_share) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


@dataclass
class Outcome:
    finished: bool  # all steps done (False: stopped at a checkpoint, resume later)
    step: int
    best_step: int
    best: dict[str, float]
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class _Stop:
    """Turns SIGTERM/SIGINT into a request to stop at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, the deadline still works
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        log.info("signal %d: stopping at the next step and writing the checkpoint", signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _state(task: Task) -> dict:
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in task.modules().items()}


def _load_state(task: Task, state: dict) -> None:
    for name, module in task.modules().items():
        module.load_state_dict(state[name])


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary name beside `path`, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def best_weights(path: Path) -> dict:
    """The best-validated weights of a checkpoint, per module name."""
    checkpoint = load_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint at {path}")
    return checkpoint["best_state"]


def train(
    task: Task,
    schedule: Schedule,
    checkpoint: Path,
    *,
    minutes: float | None = None,
    progress: bool = True,
    on_validate: Callable[[int, dict], None] | None = None,
) -> Outcome:
    """Run (or continue) `task` for `schedule.steps` steps; see the module docstring. Returns
    where it stopped; the best weights are loaded into the task's modules when it finishes."""
    torch.manual_seed(schedule.seed)
    rng = np.random.default_rng(schedule.seed)
    params = [p for p in task.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule.rate)
    step, best_step, best, history, seconds = 0, 0, {"score": -math.inf}, [], 0.0
    best_state = _state(task)

    saved = load_checkpoint(checkpoint)
    if saved is not None:
        if saved.get("task") != task.name or saved.get("schedule", {}).get("steps") != schedule.steps:
            raise ValueError(
                f"{checkpoint} belongs to another run ({saved.get('task')}, {saved.get('schedule', {}).get('steps')} steps); "
                f"move it away to start {task.name} afresh"
            )
        _load_state(task, saved["state"])
        optimiser.load_state_dict(saved["optimiser"])
        lr_schedule.load_state_dict(saved["lr_schedule"])
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        step, best_step, best, history = saved["step"], saved["best_step"], saved["best"], saved["history"]
        best_state, seconds = saved["best_state"], saved.get("seconds", 0.0)
        log.info("%s: resumed at step %d/%d (best %.4f at step %d)", task.name, step, schedule.steps, best["score"], best_step)
    else:
        log.info("%s: %d steps from scratch, peak learning rate %g, seed %d", task.name, schedule.steps, schedule.learning_rate, schedule.seed)

    def write(finished: bool):
        save_atomic(
            {
                "version": CHECKPOINT_VERSION,
                "task": task.name,
                "schedule": asdict(schedule),
                "step": step,
                "finished": finished,
                "state": _state(task),
                "optimiser": optimiser.state_dict(),
                "lr_schedule": lr_schedule.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "best_step": best_step,
                "best": best,
                "best_state": best_state,
                "history": history,
                "seconds": seconds,
            },
            checkpoint,
        )

    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=schedule.steps, initial=step, desc=task.name, mininterval=10, leave=False)
    if step == 0 and not history and schedule.validate_first:
        for module in task.modules().values():
            module.eval()
        with torch.no_grad():
            scores = task.validate()
        history.append({"step": 0, "seconds": 0.0, **scores})
        best, best_step, best_state = dict(scores), 0, _state(task)
        log.info("%s step 0/%d  | validation %s (the starting weights)", task.name, schedule.steps, " ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    running: dict[str, float] = {}
    count = 0
    started = time.perf_counter()
    stopped = minutes is not None and minutes <= 0  # 0: only load the checkpoint (to export it)
    with _Stop() as stop:
        while step < schedule.steps and not stopped:
            for module in task.modules().values():
                module.train()
            loss, terms = task.step(step, rng)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if schedule.clip_norm:
                torch.nn.utils.clip_grad_norm_(params, schedule.clip_norm)
            optimiser.step()
            lr_schedule.step()
            step += 1
            count += 1
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                running[k] = running.get(k, 0.0) + float(v)
            if bar is not None:
                bar.update(1)
            if step % schedule.validate_every == 0 or step == schedule.steps:
                for module in task.modules().values():
                    module.eval()
                with torch.no_grad():
                    scores = task.validate()
                elapsed = seconds + time.perf_counter() - started
                record = {"step": step, "seconds": round(elapsed, 1), "lr": optimiser.param_groups[0]["lr"], **{k: v / count for k, v in running.items()}, **scores}
                history.append(record)
                improved = scores["score"] > best["score"]
                if improved:
                    best, best_step, best_state = dict(scores), step, _state(task)
                log.info(
                    "%s step %d/%d  %s  | validation %s%s  %.0f s",
                    task.name, step, schedule.steps,
                    " ".join(f"{k} {v / count:.4g}" for k, v in running.items()),
                    " ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                    "  (best)" if improved else "", elapsed,
                )
                if on_validate is not None:
                    on_validate(step, scores)
                running, count = {}, 0
                seconds, started = elapsed, time.perf_counter()
                write(step == schedule.steps)
                if step < schedule.steps and (stop.requested or (deadline is not None and time.monotonic() > deadline)):
                    stopped = True
                    break
            elif stop.requested:
                # Stop between validations: checkpoint the exact state so that the resumed run
                # continues the same sequence; validation resumes on its own schedule.
                seconds, started = seconds + time.perf_counter() - started, time.perf_counter()
                write(False)
                stopped = True
                break
    if bar is not None:
        bar.close()
    finished = step >= schedule.steps and not stopped
    if finished:
        _load_state(task, best_state)
        log.info("%s: done, best validation %.4f at step %d of %d", task.name, best["score"], best_step, step)
    else:
        log.info("%s: stopped at step %d/%d; run the same command again to continue", task.name, step, schedule.steps)
    return Outcome(finished, step, best_step, best, history, seconds)


def start_log(path: Path, logger_name: str = "moemri.train") -> None:
    """Log to `path` (appended, so a resumed run keeps its history in one file) and to stderr."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(path, mode="a"), logging.StreamHandler()],
        force=True,
    )
    logging.getLogger(logger_name).setLevel(logging.INFO)
