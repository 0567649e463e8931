import pytest
import torch

from moemri.devices import resolve_device, run_with_memory_fallback
from moemri.errors import InputError


def test_auto_and_cpu_resolve_and_unknown_devices_are_refused():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU").type == "cpu"
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_out_of_memory_halves_the_budget_then_falls_back_to_the_cpu():
    calls = []

    def run(device, budget):
        calls.append((device.type, budget))
        if device.type != "cpu":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    class FakeGpu:
        type = "cuda"

        def __str__(self):
            return "cuda:0"

    if not hasattr(torch.cuda, "empty_cache"):
        pytest.skip("torch without cuda stubs")
    result, notes = run_with_memory_fallback(run, FakeGpu(), budget_bytes=1 << 30)
    assert result == "done" and notes["device"] == "cpu" and "ran on the CPU" in notes["fallback"]
    assert [b for d, b in calls if d == "cuda"] == [1 << 30, 1 << 29, 1 << 28, 1 << 27]
    with pytest.raises(ValueError):
        run_with_memory_fallback(lambda d, b: (_ for _ in ()).throw(ValueError("other")), FakeGpu())


def test_auto_takes_apples_gpu_where_torch_has_it_and_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_a_device_this_computer_lacks_is_shown_as_the_cpu_it_falls_back_to(monkeypatch):
    from moemri.methods import choices

    monkeypatch.setattr(choices, "available_devices", lambda: ["auto", "cpu"])
    assert choices.resolve_device("cuda:1") == "cpu"
    assert choices.device_note("cuda:1") == "The scene asks for cuda:1, which this computer does not have: the method runs on cpu."
    assert choices.device_note("cpu") is None and choices.device_note("auto") is None and choices.device_note("") is None
