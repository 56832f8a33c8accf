"""The benchmark's pandas baseline computes the same behaviour features as the kernel, so the
benchmark compares like with like."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import random_inputs
from suitability.features.kernel import compute_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pandas_baseline import pandas_behaviour_features


def test_pandas_baseline_matches_kernel(specs):
    inputs = random_inputs(specs, n_customers=40, n_events=6000, seed=11)
    t = pd.Timestamp("2025-02-01")
    ids = pd.Index(inputs.customers["customer_id"])
    ours = compute_features(
        inputs, pd.DataFrame({"customer_id": ids, "as_of": t}), specs
    ).set_index("customer_id")
    theirs = pandas_behaviour_features(inputs.events, ids, t, specs)
    behaviour = [
        f.name
        for f in specs.features
        if f.source == "behaviour" and f.name != "revealed_minus_stated"
    ]
    assert set(behaviour) <= set(theirs.columns)
    for name in behaviour:
        np.testing.assert_allclose(
            ours[name].to_numpy(dtype=float),
            theirs[name].to_numpy(dtype=float),
            rtol=1e-9,
            atol=1e-6,
            err_msg=name,
        )
