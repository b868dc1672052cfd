import pytest

from datasets.synth import write_like

#: the four original layouts (``synth --like``) and the dataset each is read as
MLR = {"market1501": "mlr-market1501", "cuhk03": "mlr-cuhk03", "viper": "mlr-viper",
       "caviar": "caviar"}


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    """Generated stand-ins of the four layouts (12 identities each), written once: tests that
    change files copy them first."""
    r = tmp_path_factory.mktemp("data")
    for like in MLR:
        write_like(like, r, ids=12, seed=0)
    return r
