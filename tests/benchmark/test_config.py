import pytest

from benchmark.core.errors import UserError
from benchmark.harness.config import list_profiles, load_config
from benchmark.harness.records import config_hash


def test_profiles_listed_with_descriptions():
    profiles = list_profiles()
    assert {"paper", "cpu", "smoke"} <= set(profiles)
    assert all(profiles.values())


def test_paper_profile_matches_paper_settings():
    cfg = load_config("paper")
    assert cfg["model"]["arch"] == "resnet50" and cfg["model"]["input_size"] == [256, 128]
    t = cfg["train"]
    assert (t["batch_size"], t["num_instances"], t["epochs"]) == (64, 4, 120)
    assert t["base_lr"] == 0.0007 and t["weight_decay"] == 0.0005
    assert t["milestones"] == [40, 70] and t["gamma"] == 0.2
    assert (cfg["loss"]["lambda_cls"], cfg["loss"]["lambda_tri"]) == (3.0, 1.0)


def test_set_overrides_with_type_check():
    cfg = load_config("smoke", ["train.epochs=5", "train.base_lr=1", "model.input_size=[32,16]",
                                "eval.normalize=false", "model.weights=/x.pth"])
    assert cfg["train"]["epochs"] == 5
    assert cfg["train"]["base_lr"] == 1.0 and isinstance(cfg["train"]["base_lr"], float)
    assert cfg["model"]["input_size"] == [32, 16]
    assert cfg["eval"]["normalize"] is False
    assert cfg["model"]["weights"] == "/x.pth"


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("nope=1", "unknown config key 'nope'"),
    ("train.epochs=three", "'train.epochs' expects int"),
    ("eval.normalize=3", "'eval.normalize' expects bool"),
    ("train=3", "is a section"),
    ("eval.query_resolution=mid", "must be one of lr, hr"),
    ("train.epochs", "expected key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("smoke", [override])


def test_unknown_profile_lists_valid():
    with pytest.raises(UserError, match="valid profiles: cpu, paper, smoke"):
        load_config("huge")


def test_batch_must_be_multiple_of_k():
    with pytest.raises(UserError, match="multiple"):
        load_config("smoke", ["train.batch_size=10"])


def test_hash_is_stable_and_sensitive():
    a, b = load_config("smoke"), load_config("smoke")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config("smoke", ["train.epochs=9"]))


def test_keys_added_later_stay_out_of_the_hash_at_their_neutral_value():
    """A run that does not use random erasing keeps the id it had before the option existed;
    one that uses it (or changes one of its settings) is another run."""
    from benchmark.harness.records import ADDED_LATER, run_config

    base = load_config("smoke")
    part = run_config(base, None, None)
    assert not set(part["train"]) & {k.split(".")[1] for k in ADDED_LATER}
    h = config_hash(part)
    for override in ("train.random_erasing=0.5", "train.erasing_fill=mean",
                     "train.erasing_area=[0.1,0.3]"):
        assert config_hash(run_config(load_config("smoke", [override]), None, None)) != h
    with pytest.raises(UserError, match="low <= high"):
        load_config("smoke", ["train.erasing_area=[0.4,0.1]"])
