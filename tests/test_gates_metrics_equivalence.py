"""The gates' metrics equal the standard definitions of scikit-learn, scipy and numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from gates import metrics
from gates.divergence import pair_divergence
from gates.drift_stats import training_stats


@pytest.mark.parametrize("seed, n, ties", [(0, 50, False), (1, 2000, True), (2, 20_000, False), (3, 7, True)])
def test_auc_equals_sklearn(seed, n, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(y * 0.7, 1.0)
    if ties:  # coarse scores: many ties inside and across classes
        s = np.round(s, 1)
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.roc_auc(y, s.astype(np.float32)) == pytest.approx(roc_auc_score(y, s.astype(np.float32)), abs=1e-12)


def test_auc_of_one_class_is_nan():
    assert math.isnan(metrics.roc_auc(np.zeros(10), np.arange(10.0)))


@pytest.mark.parametrize("seed, n, m, shift", [(0, 300, 500, 0.0), (1, 5000, 4000, 0.1), (2, 20, 30, 0.5)])
def test_ks_equals_scipy(seed, n, m, shift):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    b = np.round(rng.normal(shift, 1, m), 2)
    d, p = metrics.ks_statistic(a, b)
    ref = ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_psi_matches_its_definition():
    e = np.array([10, 20, 30, 40])
    a = np.array([25, 25, 25, 25])
    pe, pa = e / e.sum(), a / a.sum()
    assert metrics.psi(e, a) == pytest.approx(np.sum((pa - pe) * np.log(pa / pe)))
    assert metrics.psi(e, e * 3) == pytest.approx(0.0)
    # an empty bin is floored, not infinite
    assert math.isfinite(metrics.psi(np.array([0, 10]), np.array([5, 5])))


def test_bin_counts_equal_numpy_histogram():
    rng = np.random.default_rng(4)
    x = rng.normal(size=10_000)
    edges = metrics.quantile_edges(x, 10)
    counts = metrics.bin_counts(x, edges)
    ref, _ = np.histogram(x, bins=np.r_[-np.inf, edges, np.inf])
    # numpy's bins are [a, b) too (but the last is closed; it is +inf here)
    assert counts.tolist() == ref.tolist()
    assert counts.sum() == x.size


def test_pair_divergence_equals_pandas():
    rng = np.random.default_rng(5)
    champ = rng.random(5000)
    cand = np.clip(champ + rng.normal(0, 0.05, 5000), 0, 1)
    df = pd.DataFrame({"c": champ, "s": cand, "cl": (champ > 0.5).astype(int), "sl": (cand > 0.5).astype(int)})
    d = pair_divergence(champ, cand, df.cl.to_numpy(), df.sl.to_numpy())
    assert d["agreement_rate"] == pytest.approx((df.cl == df.sl).mean())
    assert d["mean_abs_diff"] == pytest.approx((df.s - df.c).abs().mean())
    assert d["p99_abs_diff"] == pytest.approx((df.s - df.c).abs().quantile(0.99))
    assert d["ks"] == pytest.approx(ks_2samp(champ, cand).statistic)
    bins = pd.qcut(df.c, 10, retbins=True)[1]
    e = np.histogram(df.c, bins=np.r_[-np.inf, bins[1:-1], np.inf])[0]
    a = np.histogram(df.s, bins=np.r_[-np.inf, bins[1:-1], np.inf])[0]
    assert d["psi"] == pytest.approx(metrics.psi(e, a))


def test_training_stats_bins_flags_per_value_and_continuous_by_quantile():
    rng = np.random.default_rng(6)
    X = np.stack([rng.normal(50, 10, 10_000), (rng.random(10_000) < 0.12).astype(float)], axis=1)
    stats = training_stats(X, ["age", "flag"])
    age, flag = stats["features"]["age"], stats["features"]["flag"]
    assert len(age["edges"]) == 9 and np.allclose(age["proportions"], 0.1, atol=0.002)
    assert flag["edges"] == [0.5]
    assert flag["proportions"] == pytest.approx([np.mean(X[:, 1] == 0), np.mean(X[:, 1] == 1)])
    # a shift of the flag's share is visible in PSI
    shifted = metrics.bin_counts(np.r_[np.zeros(600), np.ones(400)], np.array(flag["edges"]))
    assert metrics.psi(np.array(flag["proportions"]), shifted) > 0.2


def test_drift_psi_equals_a_histogram_computation_and_nan_fails():
    """The drift gate's PSI per feature against an independent pandas/numpy computation on the
    training edges; a feature whose training statistics hold no values (PSI undefined) fails."""
    from types import SimpleNamespace

    from gates.checks.drift import DriftGate
    from gates.gate_config import parse_config

    rng = np.random.default_rng(8)
    train = rng.normal(50, 10, 20_000)
    prod = rng.normal(53, 12, 5_000)
    stats = training_stats(train[:, None], ["age"])
    edges = np.array(stats["features"]["age"]["edges"])
    e = pd.Series(pd.cut(train, np.r_[-np.inf, edges, np.inf], right=False)).value_counts(normalize=True, sort=False).to_numpy()
    a = pd.Series(pd.cut(prod, np.r_[-np.inf, edges, np.inf], right=False)).value_counts(normalize=True, sort=False).to_numpy()
    e, a = np.clip(e, metrics.PSI_EPS, None), np.clip(a, metrics.PSI_EPS, None)
    expected = float(np.sum((a - e) * np.log(a / e)))
    sample = SimpleNamespace(names_seen={"age"}, columns={"age": prod}, n_rows=prod.size, sample_share=1.0)
    ctx = SimpleNamespace(config=parse_config({"drift": {"max_psi": expected + 0.01}}), training_stats=stats,
                          frame=SimpleNamespace(features=sample))
    res = DriftGate().evaluate(ctx)
    assert res.values["features"]["age"]["psi"] == pytest.approx(expected, rel=1e-9)
    assert res.passed
    ctx.config = parse_config({"drift": {"max_psi": expected - 0.01}})
    assert not DriftGate().evaluate(ctx).passed
    empty = {**stats, "features": {"age": {**stats["features"]["age"],
                                           "proportions": [0.0] * len(stats["features"]["age"]["proportions"])}}}
    ctx.training_stats, ctx.config = empty, parse_config({})
    res = DriftGate().evaluate(ctx)
    assert not res.passed and res.values["features"]["age"]["status"] == "drift"
