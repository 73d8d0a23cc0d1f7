"""Fuzz every loader (a bounded campaign in CI; ``OMG_FUZZ_LONG=1`` or ``tests/fuzz/run_fuzz.py
--long`` runs 10,000 inputs per loader) and replay every input kept in regressions/.

Pass: no signal death, no hang, no traceback; each failure is our one-line error naming the file.
"""

from __future__ import annotations

import os

import pytest

import fuzzlib
from run_fuzz import CI_COUNTS, LONG_N


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    counts = {l: LONG_N for l in fuzzlib.LOADERS} if os.environ.get("OMG_FUZZ_LONG") else CI_COUNTS
    seed = int(os.environ.get("OMG_FUZZ_SEED", "0"))
    return fuzzlib.campaign(counts, seed, tmp_path_factory.mktemp("fuzz"))


def _report(failures) -> str:
    return "\n".join(f"{o.path.name}: {o.status}: {o.message[:300]}" for o in failures[:10])


@pytest.mark.parametrize("loader", fuzzlib.LOADERS)
def test_loader_survives_mutated_inputs(campaign, loader):
    outcomes = campaign.by_loader(loader)
    assert len(outcomes) == CI_COUNTS[loader] or os.environ.get("OMG_FUZZ_LONG")
    failures = campaign.failures(loader)
    assert not failures, _report(failures)
    # the unmutated seeds load, and the mutations really reach the error paths
    seeds = outcomes[: campaign.seeds[loader]]
    assert seeds and all(o.status == "loaded" for o in seeds), _report(seeds)
    assert sum(o.status == "error" for o in outcomes) >= len(outcomes) // 4


def test_kept_regression_inputs_pass():
    cases = fuzzlib.regression_cases()
    outcomes = fuzzlib.run_cases(cases)
    assert len(outcomes) == len(cases)
    failures = [o for o in outcomes if o.failed]
    assert not failures, _report(failures)
