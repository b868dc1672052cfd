"""The speed checks read pytest-benchmark's statistics, which exist only when it is enabled."""

import pytest


@pytest.fixture(autouse=True)
def _benchmarks_enabled(request):
    if "benchmark" in request.fixturenames and request.getfixturevalue("benchmark").disabled:
        pytest.skip("speed checks need --benchmark-enable (tox -e bench passes it)")
