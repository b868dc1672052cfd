import pytest

from benchmark.harness.aggregate import mean_std, summarize


def test_mean_std():
    s = mean_std([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "n": 3}
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    with pytest.raises(ValueError):
        mean_std([])


def test_summarize_records():
    recs = [{"metrics": {"rank1": 10.0, "mAP": 4.0}}, {"metrics": {"rank1": 20.0, "mAP": 6.0}}]
    out = summarize(recs, ("rank1", "mAP"))
    assert out["rank1"]["mean"] == 15.0 and out["mAP"]["n"] == 2
