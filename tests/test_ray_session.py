"""search/driver/ray_session.py: what a reused trial worker does between trials."""

import sys
import types

from search.driver.ray_session import free_gpu_memory


def fake_torch(initialized: bool, calls: list) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_initialized=lambda: initialized, empty_cache=lambda: calls.append("empty"))
    return torch


def test_a_finished_trials_cached_gpu_memory_goes_back_before_the_next_trial(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "torch", fake_torch(True, calls))
    free_gpu_memory()
    assert calls == ["empty"]


def test_a_worker_where_cuda_was_never_used_does_not_start_it(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "torch", fake_torch(False, calls))
    free_gpu_memory()
    monkeypatch.delitem(sys.modules, "torch")
    free_gpu_memory()  # torch never imported: nothing to do, nothing imported
    assert calls == [] and "torch" not in sys.modules
