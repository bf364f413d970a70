"""hepnb.metrics against numbers worked out by hand on small arrays, plus NumPy/torch agreement and bad input."""
import math
import sys

import numpy as np
import polars as pl
import pytest
import torch

from hepnb.core import HepnbError
from hepnb import metrics as M


# ---------------------------------------------------------------- resolution

def test_sigma68_hand():
    # np.quantile (linear) of arange(101) at level p is exactly 100 p: (84.135 - 15.865) / 2
    assert M.sigma68(np.arange(101.0)) == pytest.approx(34.135, abs=1e-9)
    # [1..5]: position p*(n-1) = 4p -> q(0.15865) = 1 + 0.6346 = 1.6346, q(0.84135) = 1 + 3.3654 = 4.3654
    assert M.sigma68([5, 1, 4, 2, 3]) == pytest.approx((4.3654 - 1.6346) / 2, abs=1e-12)


def test_sigma_eff_hand():
    # 70 evenly spaced core values on [-1, 1] (gap 2/69) + 30 far values on [10, 40]:
    # k = ceil(0.6827 * 100) = 69 values; the narrowest window of 69 spans 68 gaps = 136/69 -> half 68/69
    bimodal = np.r_[np.linspace(-1, 1, 70), np.linspace(10, 40, 30)]
    assert M.sigma_eff(bimodal) == pytest.approx(68 / 69, rel=1e-12)
    assert M.sigma68(bimodal) > 5                       # the central interval reaches into the far mode
    # frac 0.5 of 6 values -> windows of 3 sorted values: widths 1.1, 0.2, 3.9, 7.8 -> 0.2 / 2
    assert M.sigma_eff([9, 0, 1.1, 1, 5, 1.2], frac=0.5) == pytest.approx(0.1)
    assert M.sigma_eff([3, -1, 7], frac=1) == 4.0      # everything: (7 - (-1)) / 2


def test_bias_rms_hand():
    assert M.bias([1, 2, 10]) == 2.0 and M.bias([1, 2, 9], kind="mean") == 4.0
    assert M.rms([3, 4, 3, 4]) == pytest.approx(math.sqrt((9 + 16) / 2))   # about zero, bias included
    assert M.rms([3, 4, 3, 4], center=True) == pytest.approx(0.5)           # about the mean 3.5


def test_gaussian_widths():
    x = np.random.default_rng(1).normal(0.3, 2.0, 50_000)
    assert M.sigma68(x) == pytest.approx(2.0, rel=0.02)
    assert M.sigma_eff(x) == pytest.approx(2.0, rel=0.02)
    assert M.rms(x, center=True) == pytest.approx(2.0, rel=0.02)
    assert M.bias(x) == pytest.approx(0.3, abs=0.03)


def test_bootstrap_mean_error_is_one_over_sqrt_n():
    n = 1000
    x = np.random.default_rng(7).normal(size=n)
    value, err = M.bootstrap(np.mean, x, n=400, seed=3)
    assert value == x.mean()
    assert err == pytest.approx(1 / math.sqrt(n), rel=0.10)
    assert M.bootstrap(np.mean, x, n=50, seed=3) == M.bootstrap(np.mean, x, n=50, seed=3)   # reproducible


def test_bootstrap_resamples_tuples_together():
    a = np.random.default_rng(0).normal(size=200)
    # the same index drawn for both arrays: a - a is always 0, so the error is exactly 0
    assert M.bootstrap(lambda u, v: np.mean(u - v), (a, a.copy()), n=20) == (0.0, 0.0)
    assert M.bootstrap(lambda u, v: np.mean(u - v), (a, a[::-1].copy()), n=20)[1] > 0


def test_resolution_profile_hand():
    # bin [0,1): 40 residuals of +1 -> median 1; bin [1,2): 40 residuals of +-2 -> rms 2 in any resample;
    # bin [2,3]: 5 events < min_count -> NaN; 3.0 sits on the last edge and counts; -1 and 3.5 are outside.
    x = np.r_[np.full(40, 0.5), np.full(40, 1.5), [2.5] * 4, [3.0], [-1.0, 3.5]]
    r = np.r_[np.ones(40), np.tile([2.0, -2.0], 20), np.zeros(5), [9.0, 9.0]]
    p = M.resolution_profile(x, r, [0, 1, 2, 3], stat=M.rms, min_count=10, n_boot=30)
    assert p.centres.tolist() == [0.5, 1.5, 2.5] and p.counts.tolist() == [40, 40, 5]
    assert p.values[:2].tolist() == [1.0, 2.0] and p.errors[:2].tolist() == [0.0, 0.0]
    assert np.isnan(p.values[2]) and np.isnan(p.errors[2]) and p.edges.tolist() == [0, 1, 2, 3]


def test_resolution_profile_default_sigma68():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 4, 8000)
    res = rng.normal(0, 1 + t)                      # width 1 + t
    p = M.resolution_profile(t, res, 4, n_boot=40)
    assert p.counts.sum() == 8000
    assert np.all(np.abs(p.values / (1 + p.centres) - 1) < 0.1)
    # bootstrap error of a width from ~2000 Gaussian events: about 1.1 sigma / sqrt(2 n) ~ 2 % of the value
    assert np.all((p.errors > 0.005 * p.values) & (p.errors < 0.05 * p.values))


# ---------------------------------------------------------------- directions

def test_opening_angle_known_vectors():
    ex = [1.0, 0, 0]
    u = np.array([ex, ex, ex, ex, [2, 0, 0], [0, 0, 5]])
    v = np.array([ex, [0, 1, 0], [-1, 0, 0], [1, 1, 0], [3, 0, 0], [0, 1, 1]])
    assert M.opening_angle(u, v) == pytest.approx([0, np.pi / 2, np.pi, np.pi / 4, 0, np.pi / 4], abs=1e-15)


def test_opening_angle_tiny_angles():
    # atan2(|u x v|, u.v) for u = (1,0,0), v = (1,e,0): |u x v| = e, u.v = 1 -> atan(e) = e to 1e-24 relative
    eps = np.array([1e-6, 1e-9, 1e-12, 1e-15])
    u = np.tile([2.0, 0, 0], (4, 1))
    v = np.c_[np.full(4, 3.0), 3 * eps, np.zeros(4)]
    assert np.allclose(M.opening_angle(u, v), eps, rtol=1e-12, atol=0)
    # what arccos of the normalised dot product would give: nothing below ~1e-8
    cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    assert np.arccos(np.clip(cos, -1, 1))[2] == 0.0


def test_opening_angle_torch_keeps_library_and_gradient():
    u = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]], requires_grad=True)
    v = torch.tensor([[2.0, 0, 0], [0.0, 1, 0]])
    a = M.opening_angle(u, v)
    assert isinstance(a, torch.Tensor) and a.dtype == torch.float32
    assert torch.allclose(a, torch.tensor([0.0, math.pi / 2]))
    a.sum().backward()
    # d theta / d u at theta = 90 deg, u=(1,0,0), v=(0,1,0): -v_perp/|u| = (0,-1,0); at theta = 0 a zero subgradient
    assert torch.allclose(u.grad, torch.tensor([[0.0, 0, 0], [0, -1, 0]]), atol=1e-7)
    assert M.opening_angle(torch.tensor([1.0, 0, 0]), np.array([1.0, 1e-6, 0])).item() == pytest.approx(1e-6, rel=1e-5)


def test_angle68_hand():
    # angles 0.00, 0.01, ..., 1.00 rad: the 0.6827 quantile (linear) is 0.6827
    th = np.arange(101) * 0.01
    pred = np.c_[np.sin(th), np.zeros(101), np.cos(th)]
    true = np.tile([0, 0, 1.0], (101, 1))
    assert M.angle68(pred, true) == pytest.approx(0.6827, abs=1e-12)
    assert M.angle68(pred, true, level=0.5) == pytest.approx(0.5, abs=1e-12)


# ---------------------------------------------------------------- quantile heads

def test_quantile_coverage_hand():
    # 0 in [-1,1] yes; 1 in [1.5,2] no; 2 in [1,3] yes; 3 in [4,5] no; NaN label ignored -> 2/4
    # (the unlabelled row's NaN prediction is allowed: there is nothing to compare it with)
    y = [0, 1, 2, 3, np.nan]
    assert M.quantile_coverage(y, [-1, 1.5, 1, 4, np.nan], [1, 2, 3, 5, np.nan]) == 0.5
    assert M.quantile_coverage([1, 2], [1, 0], [3, 2]) == 1.0          # the interval is closed


def test_calibration_curve_hand():
    y = [1, 2, 3, 4, np.nan]
    # level 0.25: preds 0,1,2,3 -> y <= q for none -> 0; level 0.5: q = 2.5 -> y in {1, 2} -> 0.5; level 0.9: 10 -> 1
    c = M.calibration_curve(y, {0.9: [10] * 5, 0.5: [2.5] * 5, 0.25: [0, 1, 2, 3, 0]})
    assert c.nominal.tolist() == [0.25, 0.5, 0.9] and c.observed.tolist() == [0.0, 0.5, 1.0]
    assert c.errors.tolist() == pytest.approx([0.0, math.sqrt(0.25 / 4), 0.0])


def test_pinball_loss_values():
    # level 0.9, d = y - q = (1, 0, -3): 0.9*1, 0, (0.9-1)*(-3) = 0.3; NaN target ignored -> 1.2 / 3
    assert M.pinball_loss([1, 2, 3, 7], [2, 2, 0, np.nan], 0.9) == pytest.approx(0.4)
    # level 0.5 is half the absolute error: (1 + 3) / 2 / 2
    assert M.pinball_loss([1, 3], [2, 0], 0.5) == pytest.approx(1.0)
    # (N, K) heads with K levels, target broadcast: row 0 d=(1,1) -> .1, .9; row 1 d=(-1,-1) -> .9, .1 -> 2/4
    assert M.pinball_loss([[0, 0], [2, 2]], [[1], [1]], [0.1, 0.9]) == pytest.approx(0.5)


def test_pinball_loss_torch_gradient():
    q = torch.tensor([1.0, 2.5, 3, 4], requires_grad=True)
    y = torch.tensor([2.0, 2, 0, float("nan")])
    loss = M.pinball_loss(q, y, 0.9)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0
    assert loss.item() == pytest.approx((0.9 * 1 + 0.1 * 0.5 + 0.1 * 3) / 3)
    loss.backward()
    # d/dq: -level where y > q, (1 - level) where y < q, 0 for the unlabelled one; divided by 3 labelled
    assert torch.allclose(q.grad, torch.tensor([-0.9, 0.1, 0.1, 0.0]) / 3)
    assert torch.autograd.gradcheck(lambda p: M.pinball_loss(p, y.double(), 0.3),
                                    (torch.tensor([1.0, 2.5, 3, 4], dtype=torch.float64, requires_grad=True),))


def test_pinball_loss_no_labels_and_nan_predictions():
    q = torch.zeros(3, requires_grad=True)
    loss = M.pinball_loss(q, torch.full((3,), float("nan")), 0.5)
    loss.backward()
    assert loss.item() == 0.0 and q.grad.tolist() == [0.0, 0.0, 0.0]
    assert M.pinball_loss([1.0], [np.nan], 0.5) == 0.0
    assert math.isnan(M.pinball_loss([np.nan, 1.0], [1.0, 1.0], 0.5))   # a NaN prediction is not hidden


# ---------------------------------------------------------------- classification

SCORES6 = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4]
LABELS6 = [1, 1, 0, 1, 0, 0]


def test_roc_auc_six_points_hand():
    fpr, tpr, thr = M.roc_curve(SCORES6, LABELS6)
    # walking down the scores: S S B S B B -> tpr steps 1/3 at each S, fpr 1/3 at each B
    assert tpr == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert fpr == pytest.approx([0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert thr.tolist() == [np.inf] + SCORES6
    # area: 1/3 wide at tpr 2/3, then 2/3 wide at tpr 1 -> 2/9 + 6/9 = 8/9 (8 of 9 S-B pairs ordered right)
    assert M.auc(fpr, tpr) == pytest.approx(8 / 9, abs=1e-15)


def test_roc_ties():
    # scores 0.9(S) 0.5(S) 0.5(B) 0.1(B): the tied pair enters together -> points (0,0) (0,.5) (.5,1) (1,1)
    fpr, tpr, thr = M.roc_curve([0.5, 0.9, 0.1, 0.5], [0, 1, 0, 1])
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1] and thr.tolist() == [np.inf, 0.9, 0.5, 0.1]
    # pairs: 0.9 beats both B (2), tied 0.5-0.5 counts 1/2, 0.5 beats 0.1 (1) -> 3.5 / 4
    assert M.auc(fpr, tpr) == 0.875
    assert M.auc(*M.roc_curve([1, 1, 1], [1, 0, 1])[:2]) == 0.5            # all tied: the diagonal


def test_roc_weights_equal_duplicates():
    s, y, w = [0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1], [1, 2, 3, 1]
    dup = np.repeat(np.arange(4), w)
    a = M.roc_curve(s, y, w)
    b = M.roc_curve(np.array(s)[dup], np.array(y)[dup])
    for ra, rb in zip(a, b):
        assert ra == pytest.approx(rb)


def test_roc_thresholds_mean_score_at_least():
    rng = np.random.default_rng(5)
    s = np.round(rng.uniform(size=300), 2)           # many ties
    y = rng.integers(0, 2, 300)
    fpr, tpr, thr = M.roc_curve(s, y)
    for f, t, c in zip(fpr[1:], tpr[1:], thr[1:]):
        assert t == pytest.approx(np.mean(s[y == 1] >= c)) and f == pytest.approx(np.mean(s[y == 0] >= c))
    # AUC equals the Mann-Whitney pair count with ties as 1/2
    d = s[y == 1][:, None] - s[y == 0][None, :]
    assert M.auc(fpr, tpr) == pytest.approx(np.mean(d > 0) + 0.5 * np.mean(d == 0), abs=1e-12)


def test_auc_perfect_inverted_random():
    y = np.r_[np.zeros(50), np.ones(50)]
    s = np.arange(100.0)
    assert M.auc(*M.roc_curve(s, y)[:2]) == 1.0
    assert M.auc(*M.roc_curve(-s, y)[:2]) == 0.0
    rng = np.random.default_rng(0)
    assert M.auc(*M.roc_curve(rng.uniform(size=20_000), rng.integers(0, 2, 20_000))[:2]) == pytest.approx(0.5, abs=0.015)
    assert M.auc([1, 0.5, 0], [1, 0.5, 0]) == 0.5                          # decreasing fpr is fine too


def test_accuracy_exact_match_hand():
    assert M.accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    assert M.accuracy([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], [1, 0, 0]) == pytest.approx(2 / 3)   # argmax 1, 0, 1
    # rows: all right, one wrong, all right (0.5 >= 0.5), all wrong -> 2/4
    pred = [[0.9, 0.1], [0.9, 0.9], [0.5, 0.2], [0.1, 0.8]]
    true = [[1, 0], [1, 0], [1, 0], [1, 0]]
    assert M.exact_match(pred, true) == 0.5
    assert M.exact_match([[2.0, -1.0]], [[1, 0]], threshold=0.0) == 1.0     # logits
    assert M.exact_match(np.eye(3, dtype=bool), np.eye(3, dtype=int)) == 1.0


def test_misid_at_efficiency_constructed():
    # signal scores 0.05, 0.10, ..., 1.00 (20); background 0.00, 0.01, ..., 0.99 (100)
    # 95 % of 20 = 19 signal kept -> threshold = 19th highest signal score = 0.10
    # background >= 0.10: 0.10 ... 0.99 = 90 -> misid 0.9, error sqrt(0.9 * 0.1 / 100) = 0.03
    s = np.r_[np.arange(1, 21) / 20, np.arange(100) / 100]
    y = np.r_[np.ones(20), np.zeros(100)]
    m = M.misid_at_efficiency(s, y)
    assert (m.threshold, m.n_pass, m.n_background) == (0.1, 90, 100)
    assert m.misid == 0.9 and m.misid_err == pytest.approx(0.03) and m.efficiency == 0.95
    # 50 % -> 10 kept -> threshold 0.55, background 0.55..0.99 = 45 -> 0.45
    m = M.misid_at_efficiency(s, y, efficiency=0.5)
    assert m.threshold == 0.55 and m.misid == 0.45 and m.efficiency == 0.5


def test_misid_zero_reports_upper_limit_and_ties():
    s = np.r_[np.full(10, 0.9), np.linspace(0, 0.5, 40)]
    y = np.r_[np.ones(10), np.zeros(40)]
    m = M.misid_at_efficiency(s, y, efficiency=0.8)
    # all signal tied at 0.9: asking for 80 % keeps all of it; no background passes
    assert m.efficiency == 1.0 and m.n_pass == 0 and m.misid == 0.0 and m.misid_err == 0.0
    assert m.misid_upper == pytest.approx(1 - 0.1 ** (1 / 40))               # 90 % CL, k = 0: 1 - (1-CL)^(1/n)
    assert M.misid_at_efficiency(s, y, cl=0.6827).misid_upper == pytest.approx(1 - 0.3173 ** (1 / 40))


def test_clopper_pearson_hand():
    assert M.clopper_pearson_upper(0, 10) == pytest.approx(1 - 0.1 ** 0.1, rel=1e-14)   # 0.2057
    assert M.clopper_pearson_upper(0, 1) == pytest.approx(0.9)
    assert M.clopper_pearson_upper(7, 7) == 1.0
    # k = 1, n = 10, 90 %: p solves (1-p)^10 + 10 p (1-p)^9 = 0.1 -> p = 0.33684 (tables: 0.3368)
    p = M.clopper_pearson_upper(1, 10)
    assert p == pytest.approx(0.33684, abs=1e-5)
    assert (1 - p) ** 10 + 10 * p * (1 - p) ** 9 == pytest.approx(0.1, abs=1e-12)


@pytest.mark.parametrize("k,n,cl", [(1, 10, 0.9), (3, 20, 0.6827), (40, 1000, 0.9), (50, 1_000_000, 0.95), (99, 100, 0.9)])
def test_clopper_pearson_numpy_fallback_matches(k, n, cl, monkeypatch):
    with_scipy = M.clopper_pearson_upper(k, n, cl=cl)
    monkeypatch.setitem(sys.modules, "scipy.special", None)             # "import scipy.special" now fails
    without = M.clopper_pearson_upper(k, n, cl=cl)
    assert without == pytest.approx(with_scipy, rel=1e-9)
    assert M._binom_cdf(k, n, without) == pytest.approx(1 - cl, rel=1e-9)


# ---------------------------------------------------------------- summary file

def test_summary_table_and_write(tmp_path):
    rows = [{"method": "classical", "quantity": "x", "sigma68": 0.7, "n": 100},
            {"method": "ml", "quantity": "x", "sigma68": np.float32(0.5), "n": np.int64(100), "auc": torch.tensor(0.93)},
            {"method": "ml", "quantity": "pid", "n": 3, "ok": True, "sigma68": 1}]
    df = M.summary_table(rows)
    assert df.columns == ["method", "quantity", "sigma68", "n", "auc", "ok"]
    assert df.dtypes == [pl.String, pl.String, pl.Float64, pl.Int64, pl.Float64, pl.Boolean]
    assert df["auc"].to_list()[0] is None and df["sigma68"].to_list() == pytest.approx([0.7, 0.5, 1.0])
    pq, csv = M.write_summary(df, tmp_path / "out" / "summary.parquet")
    assert (pq.name, csv.name) == ("summary.parquet", "summary.csv")
    assert pl.read_parquet(pq).equals(df)
    assert pl.read_csv(csv)["method"].to_list() == ["classical", "ml", "ml"]
    assert sorted(p.name for p in pq.parent.iterdir()) == ["summary.csv", "summary.parquet"]    # no temp files left
    pq2, _ = M.write_summary(rows, tmp_path / "out" / "summary")                               # rows accepted too
    assert pl.read_parquet(pq2).equals(df)


# ---------------------------------------------------------------- NumPy / torch agreement

rng = np.random.default_rng(11)
R = rng.normal(size=500)
Y = rng.integers(0, 2, 500).astype(float)
S = rng.uniform(size=500) + 0.3 * Y
U, V = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
YQ = np.where(rng.uniform(size=500) < 0.1, np.nan, R)
ML = rng.integers(0, 2, (500, 3))

CASES = {
    "sigma68": (M.sigma68, (R,)),
    "sigma_eff": (M.sigma_eff, (R,)),
    "bias": (M.bias, (R,)),
    "rms": (M.rms, (R,)),
    "bootstrap": (lambda r: M.bootstrap(M.sigma68, r, n=20), (R,)),
    "resolution_profile": (lambda x, r: tuple(M.resolution_profile(x, r, 3, n_boot=10)), (S, R)),
    "opening_angle": (M.opening_angle, (U, V)),
    "angle68": (M.angle68, (U, V)),
    "quantile_coverage": (M.quantile_coverage, (YQ, R - 1, R + 0.5 * S)),
    "calibration_curve": (lambda y, a, b: tuple(M.calibration_curve(y, {0.2: a, 0.7: b})), (YQ, R - S, R + S)),
    "pinball_loss": (lambda p, y: M.pinball_loss(p, y, 0.3), (R + S, YQ)),
    "roc_curve": (M.roc_curve, (S, Y)),
    "auc": (M.auc, M.roc_curve(S, Y)[:2]),
    "accuracy": (M.accuracy, (np.c_[S, 1 - S], Y)),
    "exact_match": (M.exact_match, (ML, ML[:, [0, 1, 1]])),
    "misid_at_efficiency": (lambda s, y: tuple(M.misid_at_efficiency(s, y)), (S, Y)),
}


def _flat(r):
    if isinstance(r, torch.Tensor): return [r.detach().cpu().numpy()]
    if isinstance(r, tuple): return [a for x in r for a in _flat(x)]
    return [np.asarray(r)]


@pytest.mark.parametrize("name", CASES)
def test_numpy_torch_agree(name):
    f, args = CASES[name]
    a = _flat(f(*args))
    b = _flat(f(*(torch.tensor(x) for x in args)))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)


def test_statistics_return_python_floats_from_tensors():
    t = torch.tensor(R, dtype=torch.float32, requires_grad=True)
    for v in (M.sigma68(t), M.sigma_eff(t), M.bias(t), M.rms(t), M.quantile_coverage(t, t - 1, t + 1)):
        assert type(v) is float
    assert M.sigma68(t) == pytest.approx(M.sigma68(R), rel=1e-6)


# ---------------------------------------------------------------- bad input

BAD = [
    (lambda: M.sigma68([]), "sigma68(residuals): expected at least one value, found an empty array"),
    (lambda: M.sigma68([1, np.nan]), "expected finite numbers, found non-finite values at 1 of 2 (first at index 1)"),
    (lambda: M.sigma68(np.zeros((2, 2))), "expected a 1-D array, found shape (2, 2)"),
    (lambda: M.sigma_eff([1, 2], frac=0), "expected 0 < frac <= 1, found 0"),
    (lambda: M.bias([1], kind="mode"), "expected kind 'median' or 'mean', found 'mode'"),
    (lambda: M.bootstrap(np.mean, ([1, 2], [1]), n=5), "expected arrays of the same length, found x[0]=2, x[1]=1"),
    (lambda: M.bootstrap(np.mean, [1, 2], n=1), "expected at least 2 resamples"),
    (lambda: M.resolution_profile([1, 2], [1], 2), "found x_truth_var=2, residual=1"),
    (lambda: M.resolution_profile([1, 2], [1, 2], [0, 0, 1]), "strictly increasing bin edges"),
    (lambda: M.opening_angle(np.zeros((3, 3)), np.zeros((2, 3))), "same shape (..., 3), found (3, 3) and (2, 3)"),
    (lambda: M.opening_angle(np.zeros((3, 2)), np.zeros((3, 2))), "found (3, 2) and (3, 2)"),
    (lambda: M.opening_angle(np.zeros((0, 3)), np.zeros((0, 3))), "found an empty array of shape (0, 3)"),
    (lambda: M.angle68(np.ones((2, 3)), np.ones((2, 3)), level=1.5), "strictly between 0 and 1, found 1.5"),
    (lambda: M.quantile_coverage([1, 2], [0, 0], [3]), "found y=2, prediction_0=2, prediction_1=1"),
    (lambda: M.quantile_coverage([np.nan], [0], [1]), "expected at least one labelled value, found 1 NaN labels"),
    (lambda: M.quantile_coverage([1.0, 2], [0, np.nan], [3, 3]), "expected finite predictions where the label is present"),
    (lambda: M.quantile_coverage([np.inf], [0], [1]), "expected finite numbers or NaN"),
    (lambda: M.calibration_curve([1], {}), "found an empty one"),
    (lambda: M.calibration_curve([1], {1.0: [1]}), "strictly between 0 and 1, found 1.0"),
    (lambda: M.pinball_loss([1, 2], [1, 2, 3], 0.5), "broadcastable shapes, found (2,), (3,) and ()"),
    (lambda: M.pinball_loss([1, 2], [[1], [2]], 0.5), "broadcast to pred's shape (2,), found (2, 2)"),
    (lambda: M.pinball_loss([], [], 0.5), "found an empty array"),
    (lambda: M.pinball_loss(torch.ones(2), torch.ones(2), 0.0), "strictly between 0 and 1, found [0.0]"),
    (lambda: M.roc_curve([0.1, np.nan], [0, 1]), "roc_curve(scores): expected finite numbers, found non-finite values"),
    (lambda: M.roc_curve([0.1, 0.2], [0, 2]), "roc_curve(labels): expected labels in {0, 1}, found [2.0]"),
    (lambda: M.roc_curve([0.1, 0.2], [1, 1]), "found 2 signal and 0 background"),
    (lambda: M.roc_curve([0.1, 0.2, 0.3], [0, 1]), "found scores=3, labels=2"),
    (lambda: M.roc_curve([0.1, 0.2], [0, 1], [1, -1]), "expected non-negative weights"),
    (lambda: M.auc([0, 1, 0.5], [0, 1, 1]), "expected fpr monotonic"),
    (lambda: M.auc([0], [0]), "expected at least 2 points, found 1"),
    (lambda: M.accuracy([1, 0], [1]), "found pred=2, true=1"),
    (lambda: M.accuracy([0.2, 0.9], [0, 1]), "accuracy(pred): expected class labels (integers; scores as (N, C)), found [0.2, 0.9]"),
    (lambda: M.accuracy(np.zeros((2, 0)), [0, 1]), "expected class scores (N, C) with C >= 1, found shape (2, 0)"),
    (lambda: M.exact_match([[1, 0]], [[1, 0, 1]]), "same shape, found (1, 2) and (1, 3)"),
    (lambda: M.exact_match([[1, 0]], [[1, 3]]), "exact_match(true): expected labels in {0, 1}"),
    (lambda: M.misid_at_efficiency([0.1, np.inf], [0, 1]), "misid_at_efficiency(scores): expected finite numbers"),
    (lambda: M.misid_at_efficiency([0.1, 0.2], [0, -1]), "expected labels in {0, 1}, found [-1.0]"),
    (lambda: M.misid_at_efficiency([0.1, 0.2], [0, 0]), "found 0 signal and 2 background"),
    (lambda: M.misid_at_efficiency([0.1, 0.2], [0, 1], efficiency=0), "expected 0 < efficiency <= 1, found 0.0"),
    (lambda: M.clopper_pearson_upper(3, 2), "expected integers 0 <= k <= n with n >= 1, found k=3, n=2"),
    (lambda: M.summary_table([]), "expected at least one row, found none"),
    (lambda: M.summary_table([{"x": 1}, {"x": "a"}]), "summary_table [column x]: expected one kind of value per column, found ['int', 'str']"),
    (lambda: M.summary_table([{"x": np.ones(2)}]), "summary_table row 0 [column x]: expected a scalar"),
    (lambda: M.summary_table([{1: 2}]), "summary_table row 0: expected string keys, found 1"),
]


@pytest.mark.parametrize("call,text", BAD, ids=[t[:40] for _, t in BAD])
def test_bad_input(call, text):
    with pytest.raises(HepnbError) as e:
        call()
    assert text in str(e.value)
