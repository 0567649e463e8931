import numpy as np

from moemri.bench.measure import measured, timing_table
from moemri.bench.score_cache import ScoreCache
from moemri.methods.registry import get_method


def test_measured_reports_the_peak_of_the_call_alone():
    from moemri.bench.measure import _read_status_kb

    spike = np.ones(6 * 10**8 // 8)  # a 600 MB peak before the call must not count
    del spike
    resident = (_read_status_kb("VmRSS") or 0) / 1024  # what the process holds anyway (the suite's imports)
    _, seconds, peak_mib = measured(lambda: np.ones(3 * 10**8 // 8).sum())
    assert seconds > 0
    if peak_mib is not None:  # Linux: the call's 300 MB on top of what is resident, not the earlier spike
        assert resident + 250 < peak_mib < resident + 550, (resident, peak_mib)


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
