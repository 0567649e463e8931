import numpy as np

from moemri.bench.measure import measured, timing_table
from moemri.bench.score_cache import ScoreCache
from moemri.methods.registry import get_method


def test_measured_reports_the_peak_of_the_call_alone():
    big = np.ones(10**8 // 8)  # 100 MB held before the call must not count
    _, seconds, peak_mib = measured(lambda: np.ones(3 * 10**8 // 8).sum())
    del big
    assert seconds > 0
    if peak_mib is not None:  # Linux
        assert 300 < peak_mib < 1200


def test_score_cache_round_trip_and_version_stamp(tmp_path, monkeypatch):
    monkeypatch.setenv("MOEMRI_BENCH_CACHE", str(tmp_path))
    cache = ScoreCache("denoise")
    cache.put("1mm|stationary|5|nlmeans-rician", [34.9, 0.95])
    again = ScoreCache("denoise")
    assert again.get("1mm|stationary|5|nlmeans-rician")["value"] == [34.9, 0.95]
    assert ScoreCache("denoise", enabled=False).get("1mm|stationary|5|nlmeans-rician") is None
    stored = (tmp_path / "denoise-classical-scores.json").read_text().replace(again.stamp, "moemri=0.0.0")
    (tmp_path / "denoise-classical-scores.json").write_text(stored)
    assert ScoreCache("denoise").get("1mm|stationary|5|nlmeans-rician") is None  # other versions: re-run


def test_timing_table_reuses_cached_classical_rows(tmp_path, monkeypatch, small_head):
    monkeypatch.setenv("MOEMRI_BENCH_CACHE", str(tmp_path))
    method = get_method("curvature-diffusion")
    calls = []

    def run_one(m):
        calls.append(m.info.name)
        return m.run(small_head, options={"iterations": 1})

    first = timing_table([method], run_one, "cpu", cache=ScoreCache("denoise"))
    second = timing_table([method], run_one, "cpu", cache=ScoreCache("denoise"))
    assert calls == ["curvature-diffusion"] and first == second and "| curvature-diffusion |" in first
