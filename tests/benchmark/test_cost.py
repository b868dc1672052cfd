"""Cost profiling: MACs against hand counts, the record, OOM retry, CLI."""

import json

import pytest
import torch

import benchmark.harness.cost as cost
from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.harness.config import load_config


def test_count_macs_of_a_conv_and_a_linear():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(1, 3, 10, 6)
    assert cost.count_macs(lambda: conv(x)) == 8 * 3 * 9 * 10 * 6
    lin = torch.nn.Linear(16, 4)
    assert cost.count_macs(lambda: lin(torch.randn(2, 16))) == 2 * 16 * 4


def test_throughput_statistics():
    t = cost.throughput([0.5, 0.25, 1.0], batch=10)
    assert t["images_per_s"] == 20.0 and t["min"] == 10.0 and t["max"] == 40.0
    assert t["step_s_median"] == 0.5


class FakeClock:
    """perf_counter that advances by the next scripted step time at each step call."""

    def __init__(self, step_times):
        self.now, self.times, self.calls = 0.0, list(step_times), 0

    def perf_counter(self):
        return self.now

    def step(self):
        self.now += self.times[min(self.calls, len(self.times) - 1)]
        self.calls += 1


@pytest.mark.parametrize("step_times, warmup, expected_warmup", [
    ([1.0] * 10, 2, 3),  # steady from the start: the window of 3 is all it takes
    ([5.0, 4.0, 3.0, 1.0, 1.05, 1.1, 1.0, 1.0], 2, 6),  # slow start: warms until 3 agree
    ([5.0, 1.0, 1.0, 1.0, 1.0], 4, 4),  # already settled at the requested count
    ([1.0, 3.0] * 40, 1, 21),  # never settles: stops 20 steps past --warmup
    ([9.0, 1.0], 0, 0),  # 0: no warm-up at all
])
def test_warmup_runs_until_steps_settle(monkeypatch, step_times, warmup, expected_warmup):
    clock = FakeClock(step_times)
    monkeypatch.setattr(cost.time, "perf_counter", clock.perf_counter)
    times, warmed = cost.time_steps(clock.step, torch.device("cpu"), repeats=2, warmup=warmup)
    assert warmed == expected_warmup and clock.calls == warmed + 2
    assert times == [pytest.approx(clock.times[min(i, len(clock.times) - 1)])
                     for i in (warmed, warmed + 1)]


def test_warmup_time_bound(monkeypatch):
    clock = FakeClock([10.0, 30.0] * 10)  # 10 s / 30 s alternating: never settles
    monkeypatch.setattr(cost.time, "perf_counter", clock.perf_counter)
    _, warmed = cost.time_steps(clock.step, torch.device("cpu"), repeats=1, warmup=1)
    assert warmed < 1 + cost.SETTLE_MAX_EXTRA  # stopped by SETTLE_MAX_S (60 s) first


@pytest.fixture(scope="module")
def records():
    cfg = load_config("smoke", ["model.weights=none"])
    return {m: cost.profile_method(m, cfg, "cpu", batch_size=4, repeats=1, warmup=0)
            for m in ("baseline", "ftwa")}


@pytest.mark.slow
def test_profile_record(records):
    rec = records["ftwa"]
    assert rec["schema"] == cost.SCHEMA and rec["input_size"] == [64, 32]
    p = rec["parameters"]
    assert p["all"] == sum(p["modules"].values()) and p["inference_path"] < p["all"]
    for path in ("query", "gallery", "train"):
        assert rec["throughput"][path]["images_per_s"] > 0
        assert rec["throughput"][path]["peak_memory"]["bytes"] > 0
        assert rec["throughput"][path]["warmup_steps"] == 0
    assert rec["precision"] == "fp32" and rec["layout"] == "contiguous"
    load = rec["machine_load"]
    assert load["other_processes_cores"] is None or load["other_processes_cores"] >= 0.0
    assert "other_processes_cores" in load["note"]
    assert cost.record_name(rec).startswith("profile__ftwa__smoke__cpu__fp32__contiguous__bs4")


@pytest.mark.slow
def test_macs_follow_the_paths(records):
    base, ftwa = records["baseline"]["macs"], records["ftwa"]["macs"]
    assert base["query_gmacs"] == pytest.approx(base["gallery_gmacs"])  # one path for all
    # FTWA: an HR gallery image also passes its down-sampled copy through E_L + E_ID, a query
    # passes E_L + E_ID + RAFT: the gallery path costs about twice the backbone
    assert ftwa["gallery_gmacs"] == pytest.approx(2 * base["gallery_gmacs"], rel=0.05)
    assert base["query_gmacs"] < ftwa["query_gmacs"] < 1.2 * base["query_gmacs"]


def test_out_of_memory_halves_the_batch(monkeypatch):
    seen = []

    def fake_measure(method, cfg, device, batch, *args):
        seen.append(batch)
        if batch > 2:
            raise torch.OutOfMemoryError("fake")
        return {k: {"images_per_s": 1.0} for k in ("query", "gallery", "train")}

    monkeypatch.setattr(cost, "_measure", fake_measure)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    rec = cost.profile_method("baseline", load_config("smoke", ["model.weights=none"]), "cpu",
                              batch_size=8)
    assert seen == [8, 4, 2] and rec["batch_size"] == 2 and rec["batch_size_requested"] == 8
    assert [a["batch_size"] for a in rec["oom_retries"]] == [8, 4]


def test_bad_arguments():
    cfg = load_config("smoke")
    with pytest.raises(UserError, match="batch-size"):
        cost.profile_method("baseline", cfg, "cpu", batch_size=0)


@pytest.mark.slow
def test_profile_cli(tmp_path, capsys):
    out = tmp_path / "prof"
    assert main(["profile", "--method", "ftwa", "--profile", "smoke", "--device", "cpu",
                 "--batch-size", "4", "--repeats", "1", "--warmup", "0", "--out", str(out),
                 "--set", "model.weights=none"]) == 0
    printed = capsys.readouterr().out
    assert "RAFT =" in printed and "GMACs per image" in printed and "query" in printed
    rec = json.loads(next(out.glob("*.json")).read_text())
    assert rec["method"] == "ftwa"
    assert main(["profile", "--method", "nope", "--out", str(out)]) == 2
    assert "valid methods" in capsys.readouterr().err
