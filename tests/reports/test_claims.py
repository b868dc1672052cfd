"""The claims table and the SWA diagnostics section: every number comes from the records, each
verdict follows its rule, variants are named by what they change."""

import copy
import json

import numpy as np
import pytest
from scipy import stats

from reports.claims import (
    CAD_NET_PAPER_ABLATION,
    CAD_NET_PAPER_FULL,
    CLAIMS,
    Claim,
    claims_table,
    compare,
    interval,
    rate_spread,
    reading_check,
    verdict,
)
from reports.render import build
from reports.results import aggregate, load_store, runs_frame
from reports.swa import swa_table
from tests.conftest import smoke_record


@pytest.fixture
def ftwa_record():
    return smoke_record("ftwa")


def write(folder, template, method, seed, rank1, own=None, by_rate=None, swa=None):
    rec = copy.deepcopy(template)
    rec.pop("path", None)
    rec["config"] = copy.deepcopy(rec["config"])
    rec["config"]["ftwa"].update(own or {})
    rec["model"] = dict(rec["model"], variant=dict(own or {}))  # as the run would record it
    tag = "-".join(f"{k}{v}" for k, v in (own or {}).items())
    rec.update(method=method, seed=seed, config_hash=f"h{method}{tag}",
               run_id=f"{method}__synthetic__smoke__seed{seed}__{tag}")
    rec["metrics"] = dict(rec["metrics"], rank1=rank1)
    if by_rate is not None:
        rec["metrics"]["by_rate"] = {str(r): {"rank1": v, "mAP": v, "num_queries": 10}
                                     for r, v in by_rate.items()}
    if swa is not None:
        rec["training"] = copy.deepcopy(rec["training"])
        rec["training"]["history"][-1]["swa"] = swa
        rec["training"]["swa_collapsed"] = swa["p_hr"] < 0.1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))


def test_interval_paired_and_welch_against_the_formulas():
    a, b = np.array([3.0, 5.0, 4.0]), np.array([1.0, 1.0, 2.0])
    d = a - b  # 2, 4, 2
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    diff, lo, hi, test = interval(a, b, paired=True)
    assert (diff, lo, hi) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    assert test == "paired t, df=2"
    diff, lo, hi, test = interval(a, b, paired=False)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert (lo, hi) == pytest.approx((diff - half, diff + half)) and test.startswith("Welch")
    # the same difference in every pair: no paired interval, the unpaired one is used
    assert interval(np.array([5.0, 6.0]), np.array([0.0, 1.0]), paired=True)[3].startswith(
        "Welch")
    assert np.isnan(interval(np.array([1.0]), np.array([0.0]), paired=False)[1])


@pytest.mark.parametrize("low, high, expect", [
    (0.1, 3.0, "holds"), (-3.0, -0.1, "does not hold"), (-1.0, 2.0, "inconclusive at n=3"),
    (0.0, 2.0, "inconclusive at n=3"), (-2.0, 0.0, "inconclusive at n=3"),
    (np.nan, np.nan, "inconclusive at n=3 (no interval)")])
def test_verdict_rule(low, high, expect):
    assert verdict(low, high, 3) == expect


def test_rate_spread():
    assert rate_spread({"2": {"rank1": 50.0}, "3": {"rank1": 40.0}, "4": {"rank1": 20.0}}) == 30.0
    assert np.isnan(rate_spread({"2": {"rank1": 50.0}}))


def test_claims_rows_come_from_the_records(tmp_path, ftwa_record):
    folder = tmp_path / "res"
    for seed, (lit, guard, fr) in enumerate([(30.0, 40.0, 20.0), (32.0, 45.0, 22.0),
                                             (31.0, 44.0, 19.0)]):
        write(folder, ftwa_record, "ftwa", seed, lit, by_rate={2: 40.0, 3: 30.0, 4: 20.0 + seed})
        write(folder, ftwa_record, "ftwa", seed, guard, own={"swa_weights": "detached"})
        write(folder, ftwa_record, "ftwa-r", seed, fr)
        write(folder, ftwa_record, "rain", seed, 35.0 + seed)
        write(folder, ftwa_record, "cad-net", seed, 50.0 + seed)
        write(folder, ftwa_record, "cad-net", seed, 40.0, own={"lambda_rec": 0.0})
        write(folder, ftwa_record, "ps-hrnet", seed, 41.0 + seed)
        write(folder, ftwa_record, "ps-hrnet-id-sr", seed, 42.0)
    frame = runs_frame(load_store(folder))
    frame = frame.merge(aggregate(frame)[["config_hash", "label"]], on="config_hash")
    table = claims_table(frame, frame.iloc[:0], "smoke").set_index("claim")
    # Table 1's rows: the literal FTWA and the guarded one against each system that ran
    rain = table.loc["FTWA > RAIN-style (Table 1)"]
    assert rain["diff"] == pytest.approx(np.mean([30.0 - 35.0, 32.0 - 36.0, 31.0 - 37.0]))
    assert rain["verdict"] == "does not hold"
    guarded = table.loc["FTWA [swa_weights=detached] > RAIN-style (Table 1)"]
    assert guarded["diff"] == pytest.approx(np.mean([5.0, 9.0, 7.0]))
    assert guarded["verdict"] == "holds"
    assert not any("SING" in c or "CSR-GAN" in c for c in table.index)  # did not run
    # after FTWA: PS-HRNet against both FTWAs, and its own ablation where both rows ran
    ps = table.loc["PS-HRNet > FTWA (PS-HRNet, Table I)"]
    assert ps["diff"] == pytest.approx(np.mean([11.0, 10.0, 12.0])) and ps["verdict"] == "holds"
    assert table.loc["PS-HRNet > FTWA [swa_weights=detached] (PS-HRNet, Table I)"][
        "diff"] == pytest.approx(np.mean([1.0, -3.0, -1.0]))
    teacher = table.loc["PS-HRNet: the pseudo-siamese teacher helps (ID+SR+PS > ID+SR, its "
                        "Table I)"]
    assert teacher["diff"] == pytest.approx(0.0)
    assert not any("VDSR-CA helps" in c for c in table.index)  # ps-hrnet-id did not run
    # the CAD-Net-style reading against the paper's ablation: one row per ablation that ran
    rec = table.loc["reading check: CAD-Net-style's recovery term helps (cad-net > cad-net "
                    "[lambda_rec=0])"]
    assert rec["diff"] == pytest.approx(11.0) and rec["verdict"] == "holds"
    assert not any("feature discriminator helps" in c for c in table.index)
    swa = table.loc["FTWA > FTWA-R (SWA helps)"]
    assert swa["diff"] == pytest.approx(np.mean([10.0, 10.0, 12.0]))
    assert swa["verdict"] == "holds" and swa["data"] == "generated" and swa["n"] == 3
    assert "ftwa: 31.0 ± 1.0 (n=3) vs ftwa-r: 20.3 ± 1.5 (n=3)" in swa["evidence"]
    guard = table.loc["control: the SWA guard vs the literal reading (FTWA [swa_weights="
                      "detached] > FTWA)"]
    assert guard["diff"] == pytest.approx(np.mean([10.0, 13.0, 13.0]))
    # no Baseline, no SR runs: those claims have no row; RAFT's size comes from the record
    assert not any(c.startswith("FTWA-B") or "SR-then" in c for c in table.index)
    raft = table.loc["RAFT is lightweight"]
    params = ftwa_record["model"]["parameters"]
    assert f"{100 * params['modules']['RAFT'] / params['inference_path']:.1f} %" in raft[
        "evidence"]


def _cad_net_check(tmp_path, ftwa_record, ablated):
    folder = tmp_path / "res"
    for seed in range(3):
        write(folder, ftwa_record, "cad-net", seed, 50.0 + seed)
        for key, rank1 in ablated.items():
            write(folder, ftwa_record, "cad-net", seed, rank1 + (seed % 2), own={key: 0.0})
    frame = runs_frame(load_store(folder))
    frame = frame.merge(aggregate(frame)[["config_hash", "label"]], on="config_hash")
    return reading_check(claims_table(frame, frame.iloc[:0], "smoke"))


def test_reading_check_orders_the_terms_and_compares_with_the_paper(tmp_path, ftwa_record):
    # removing the recovery term costs most here, then the feature discriminator, then the
    # image discriminator: the paper's order (costs 15.4, 14.5, 2.3)
    assert CAD_NET_PAPER_FULL - CAD_NET_PAPER_ABLATION["lambda_rec"] == pytest.approx(15.4)
    (line,) = _cad_net_check(tmp_path, ftwa_record, {"lambda_rec": 40.0, "lambda_adv_f": 44.0,
                                                     "lambda_adv_i": 48.0})
    # cad-net 50, 51, 52; without L_rec 40, 41, 40: differences 10, 10, 12
    assert line.startswith("synthetic: ")
    assert "the recovery term +10.7 [" in line and "the image discriminator +2.7 [" in line
    assert line.index("recovery term +10.7") < line.index("feature discriminator +6.7") < \
        line.index("image discriminator +2.7")
    assert "the recovery term +15.4, the feature discriminator +14.5, the image " \
           "discriminator +2.3" in line
    assert "hurts most here: as in the paper" in line and "the full order is the paper's" in line


def test_reading_check_says_when_the_reading_disagrees(tmp_path, ftwa_record):
    (line,) = _cad_net_check(tmp_path, ftwa_record, {"lambda_rec": 47.0, "lambda_adv_f": 45.0,
                                                     "lambda_adv_i": 40.0})
    assert "removing the image discriminator hurts most here: unlike the paper" in line
    assert "the full order differs" in line
    # the feature discriminator second, the recovery term third: a top-two term that is not
    # the paper's first still agrees on what hurts most, not on the full order
    (line,) = _cad_net_check(tmp_path / "b", ftwa_record, {"lambda_rec": 45.0,
                                                           "lambda_adv_f": 40.0,
                                                           "lambda_adv_i": 47.0})
    assert "removing the feature discriminator hurts most here: as in the paper" in line
    assert "the full order differs" in line


def test_reading_check_does_not_order_costs_within_noise(tmp_path, ftwa_record):
    # cad-net 50, 51, 52; every ablation 50, 51, 50: differences 0, 0, 2, interval spans zero
    (line,) = _cad_net_check(tmp_path, ftwa_record, {"lambda_rec": 50.0, "lambda_adv_f": 50.0,
                                                     "lambda_adv_i": 50.0})
    assert "Removing no term costs rank-1 beyond noise here" in line
    assert "even gains" not in line and "hurts most" not in line
    # every ablation above the full method: removing each term gains, by the means
    (line,) = _cad_net_check(tmp_path / "b", ftwa_record, {"lambda_rec": 52.0,
                                                           "lambda_adv_f": 51.0,
                                                           "lambda_adv_i": 51.5})
    assert "beyond noise here (every interval reaches zero; by the means, removing each one " \
           "even gains)" in line
    # one term beyond noise: the means are ordered as before
    (line,) = _cad_net_check(tmp_path / "c", ftwa_record, {"lambda_rec": 40.0,
                                                           "lambda_adv_f": 50.0,
                                                           "lambda_adv_i": 50.0})
    assert "removing the recovery term hurts most here: as in the paper" in line


def test_reading_check_with_a_term_missing_does_not_order(tmp_path, ftwa_record):
    (line,) = _cad_net_check(tmp_path, ftwa_record, {"lambda_adv_f": 40.0})
    assert "the feature discriminator +10.7" in line
    assert "No runs yet without the recovery term or the image discriminator" in line
    assert "hurts most" not in line
    assert _cad_net_check(tmp_path / "none", ftwa_record, {}) == []


def test_resolution_claim_compares_spreads(tmp_path, ftwa_record):
    folder = tmp_path / "res"
    for seed in range(3):
        write(folder, ftwa_record, "ftwa", seed, 30.0, by_rate={2: 40.0, 3: 38.0, 4: 35.0 - seed})
        write(folder, ftwa_record, "baseline", seed, 20.0, by_rate={2: 40.0, 3: 20.0, 4: 10.0})
    frame = runs_frame(load_store(folder))
    (row,) = compare(frame, Claim("x", "ftwa", "baseline", quantity="rate_spread"))
    assert row["diff"] == pytest.approx(30.0 - np.mean([5.0, 6.0, 7.0]))
    assert row["verdict"] == "holds"


def test_every_claim_names_methods_that_exist():
    from methods import METHODS

    for claim in CLAIMS:
        for side in (claim.better, claim.worse):
            assert side.partition(" [")[0] in METHODS, side


@pytest.mark.slow
def test_swa_table_and_report_sections(tmp_path, ftwa_record):
    folder = tmp_path / "res"
    base = {"w_hr": 0.01, "w_hr_syn": 0.98, "w_lr": 0.6, "w_lr_syn": 0.4, "saturated": 0.8}
    write(folder, ftwa_record, "ftwa", 0, 30.0, swa=base | {"p_hr": 0.05})
    write(folder, ftwa_record, "ftwa", 1, 32.0, swa=base | {"p_hr": 0.07})
    write(folder, ftwa_record, "ftwa", 0, 40.0, own={"swa_weights": "detached"},
          swa=base | {"p_hr": 0.5})
    frame = runs_frame(load_store(folder))
    frame = frame.merge(aggregate(frame)[["config_hash", "label"]], on="config_hash")
    t = swa_table(frame).set_index("method")
    assert t.loc["ftwa [as written]", "collapsed"] == "2 of 2"
    assert t.loc["ftwa [as written]", "p_hr"] == "0.060"
    assert t.loc["ftwa [swa_weights=detached]", "collapsed"] == "0 of 1"
    ctx = build(folder)
    section = ctx["sections"][0]
    assert section["swa"] is not None and "ftwa [swa_weights=detached]" in section["swa"]["md"]
    assert any(f.file == "swa__smoke.png" for f in section["figures"])
    assert "SWA helps" not in (section["claims"]["md"] if section["claims"] else "")


def test_unpaired_seeds_use_welch_and_a_reversed_claim_does_not_hold(tmp_path, ftwa_record):
    folder = tmp_path / "res"
    for seed, r1 in enumerate([20.0, 21.0, 22.0]):
        write(folder, ftwa_record, "ftwa", seed, r1)
    for seed, r1 in zip([5, 6, 7], [40.0, 42.0, 41.0]):
        write(folder, ftwa_record, "ftwa-r", seed, r1)
    frame = runs_frame(load_store(folder))
    (row,) = compare(frame, Claim("x", "ftwa", "ftwa-r"))
    diff, low, high, test = interval(np.array([20.0, 21.0, 22.0]), np.array([40.0, 42.0, 41.0]),
                                     paired=False)
    assert test.startswith("Welch") and row["difference [95% CI]"].endswith(f"({test})")
    assert (row["diff"], row["low"], row["high"]) == pytest.approx((diff, low, high))
    assert row["verdict"] == "does not hold"


def test_configs_of_one_side_are_never_pooled(tmp_path, ftwa_record):
    """Two FTWA configs with the same own options (other common settings) give two rows."""
    folder = tmp_path / "res"
    for seed in range(2):
        write(folder, ftwa_record, "ftwa", seed, 30.0 + seed)
        write(folder, ftwa_record, "ftwa-r", seed, 20.0 + seed)
    rec = json.loads(next(folder.glob("ftwa__*seed0*.json")).read_text())
    rec.update(config_hash="other", run_id="ftwa__other__seed0")
    rec["metrics"]["rank1"] = 90.0
    (folder / "ftwa__other__seed0.json").write_text(json.dumps(rec))
    frame = runs_frame(load_store(folder))
    rows = compare(frame, Claim("x", "ftwa", "ftwa-r"))
    assert sorted(r["configs"].split(" vs ")[0] for r in rows) == ["hftwa", "other"]
    by = {r["configs"].split(" vs ")[0]: r for r in rows}
    assert by["hftwa"]["diff"] == pytest.approx(10.0) and by["other"]["n"] == 1
