"""Graders for the sweep that predicts: the learning-rate and batch-size rules, where sizes are placed,
the edge rule, seed aggregation, the two-level bootstrap (against known synthetic data and a plain
reference fit written here), and the predict/check pair on a miniature."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.scaling.synthetic import law_loss, true_optimal_parameters

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


# ---- the per-size rules


def test_learning_rate_rule_is_a_width_power_law(adapters):
    # µP's rule for Adam (exponent 1): halving the width doubles the learning rate.
    mu = dict(base_learning_rate=1e-2, base_width=64, lr_exponent=1.0, max_learning_rate=1.0)
    assert adapters.run_sweep_learning_rate(64, **mu) == pytest.approx(1e-2)
    assert adapters.run_sweep_learning_rate(32, **mu) == pytest.approx(2e-2)
    assert adapters.run_sweep_learning_rate(256, **mu) == pytest.approx(2.5e-3)
    # The default rule: anchored at its base width, strictly falling with width, a power law
    # (equal width ratios give equal learning-rate ratios).
    widths = [32, 64, 128, 256]
    rates = [adapters.run_sweep_learning_rate(d) for d in widths]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    capped = dict(max_learning_rate=0.01)  # the cap binds for narrow models only
    assert adapters.run_sweep_learning_rate(8, **capped) == pytest.approx(0.01)
    assert adapters.run_sweep_learning_rate(512, **capped) == pytest.approx(
        adapters.run_sweep_learning_rate(512)
    )
    ratios = [a / b for a, b in zip(rates, rates[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert all(0 < r < 1 for r in rates)


@pytest.mark.parametrize("tokens", [1e4, 3e5, 1e6, 4e6, 1e8])
def test_batch_size_rule_targets_steps_within_limits(adapters, tokens):
    fields = dict(target_steps=400, smallest_batch=8, largest_batch=256)
    batch = adapters.run_sweep_batch_size(tokens, 64, **fields)
    assert batch & (batch - 1) == 0 and 8 <= batch <= 256  # a power of two within the limits
    steps = tokens / (64 * batch)
    if 8 < batch < 256:  # not clipped: about the target number of steps
        assert 400 / math.sqrt(2) <= steps <= 400 * math.sqrt(2)
    elif batch == 8:
        assert steps <= 400 * math.sqrt(2)
    else:
        assert steps >= 400 / math.sqrt(2)


@pytest.mark.parametrize("centre", [6e4, 2e5, 1e6])
def test_sizes_are_log_spaced_around_the_centre(adapters, centre):
    sizes = adapters.run_place_sizes(centre, sizes_per_budget=5, size_spacing=2.0)
    assert len(sizes) == len(set(sizes)) == 5 and sizes == sorted(sizes)
    assert sizes[0] < centre < sizes[-1]  # the predicted optimum is inside the grid
    assert sizes[1] < centre * 1.5 and sizes[3] > centre / 1.5
    assert math.exp(np.mean(np.log(sizes))) == pytest.approx(centre, rel=0.35)  # centred in log N
    for small, large in zip(sizes, sizes[1:]):
        assert 1.3 < large / small < 3.2  # log-spaced: neighbours about the spacing apart


class BowlRunner:
    """A fake run whose loss is a bowl in log(d_model) with its bottom at ``best_width``."""

    def __init__(self, best_width):
        self.best_width, self.calls = best_width, []

    def __call__(self, req):
        self.calls.append(req)
        loss = 3.0 + math.log(req["d_model"] / self.best_width) ** 2 + 1e-3 * req["seed"]
        return loss, loss


def test_optimum_at_an_edge_adds_a_size_beyond_it(adapters, tmp_path):
    warnings_free = adapters.run_lab_sweep(
        tmp_path / "a.sqlite", 1e14, (1e11,), BowlRunner(28), sizes_per_budget=5, max_extra_sizes=2
    )
    widths = sorted({r["d_model"] for r in warnings_free})
    assert len(warnings_free) == 5 and widths[0] < 28 < widths[-1]  # the bottom is inside: nothing added
    runner = BowlRunner(400)  # far above every placed size
    records = adapters.run_lab_sweep(
        tmp_path / "b.sqlite", 1e14, (1e11,), runner, sizes_per_budget=5, max_extra_sizes=2
    )
    assert len(records) == 7  # two sizes added, one past the other
    first, extra = records[:5], records[5:]
    assert min(r["parameters"] for r in extra) > max(r["parameters"] for r in first)
    assert extra[1]["parameters"] > extra[0]["parameters"]


def test_optimum_at_the_small_edge_adds_only_smaller_sizes(adapters, tmp_path):
    """The lowest loss at the smallest size: sizes are added below it while smaller shapes exist,
    never above; a grid that already starts at the smallest shape gets nothing added."""
    records = adapters.run_lab_sweep(
        tmp_path / "c.sqlite", 1e14, (1e12,), BowlRunner(1), sizes_per_budget=5, max_extra_sizes=2
    )
    first, extra = records[:5], records[5:]
    assert extra and max(r["parameters"] for r in extra) < min(r["parameters"] for r in first)
    floor = adapters.run_lab_sweep(
        tmp_path / "d.sqlite", 1e14, (1e10,), BowlRunner(1), sizes_per_budget=5, max_extra_sizes=2
    )
    assert len(floor) == 5 and min(r["d_model"] for r in floor) == 8


def test_every_size_has_every_seed_and_its_own_rules(adapters, tmp_path):
    records = adapters.run_lab_sweep(
        tmp_path / "l.sqlite", 1e14, (1e11, 3e11), BowlRunner(40), sizes_per_budget=5, seeds=2
    )
    assert len(records) == 2 * 5 * 2
    points = {}
    for r in records:
        points.setdefault((r["compute_budget"], r["parameters"]), []).append(r)
    assert all(sorted(r["seed"] for r in runs) == [0, 1] for runs in points.values())
    for runs in points.values():  # the seeds of a point differ only in their seed
        assert len({(r["learning_rate"], r["batch_size"], r["d_model"]) for r in runs}) == 1
    by_width = {r["d_model"]: r["learning_rate"] for r in records}
    widths = sorted(by_width)
    assert all(by_width[a] >= by_width[b] for a, b in zip(widths, widths[1:]))  # narrower: never lower
    assert by_width[widths[0]] > by_width[widths[-1]]


# ---- seed aggregation


def test_seed_aggregation_means_and_spread(adapters):
    records = [
        (1e11, 1000, 5e6, 3.0),
        (1e11, 1000, 5e6, 3.2),
        (1e11, 1000, 5e6, 3.1),
        (1e11, 2000, 2.5e6, 2.9),
    ]
    points = adapters.run_aggregate_seeds(records)
    assert len(points) == 2
    three, one = sorted(points, key=lambda p: p["parameters"])
    assert three["seeds"] == 3 and three["mean"] == pytest.approx(3.1)
    assert three["spread"] == pytest.approx(0.1)  # sample standard deviation (ddof = 1)
    assert one["seeds"] == 1 and one["mean"] == pytest.approx(2.9) and one["spread"] == 0


def test_seed_aggregation_refuses_a_diverged_run(adapters):
    with pytest.raises(ValueError):
        adapters.run_aggregate_seeds([(1e11, 1000, 5e6, 3.0), (1e11, 1000, 5e6, float("nan"))])


# ---- the bootstrap


def synthetic_sweep(noise, seeds=2, budgets=(3e17, 1e18, 3e18, 1e19), seed=0):
    """A sweep drawn from the known law: 5 sizes spaced 2x around the true optimum, ``seeds`` runs each
    with Gaussian noise of ``noise`` on the loss."""
    rng = np.random.default_rng(seed)
    records = []
    for c in budgets:
        n_opt = float(true_optimal_parameters(c))
        for k in range(-2, 3):
            n = n_opt * 2.0**k * 1.1  # off-centre, as a real placement would be
            d = c / (6 * n)
            for _ in range(seeds):
                records.append((c, n, d, float(law_loss(n, d)) + rng.normal(0, noise)))
    return records


def test_bootstrap_covers_the_known_law(adapters):
    records = synthetic_sweep(noise=0.003)
    target = 1e21  # 100x the top budget
    boot = adapters.run_bootstrap_sweep(records, target, num_samples=60)
    a_true = 0.28 / (0.34 + 0.28)
    estimate, low, high = boot["parameters_exponent"]
    assert low <= estimate <= high
    assert low - 0.03 <= a_true <= high + 0.03  # a parabola vertex is biased a little by the grid
    assert high - low < 0.2
    n_true = float(true_optimal_parameters(target))
    _, n_low, n_high = boot["parameters"]
    assert n_low / 1.5 <= n_true <= n_high * 1.5
    loss_true = float(law_loss(n_true, target / (6 * n_true)))
    loss, loss_low, loss_high = boot["loss"]
    assert loss_low - 0.02 <= loss_true <= loss_high + 0.02
    assert loss == pytest.approx(loss_true, abs=0.03)


def test_bootstrap_widens_with_noise(adapters):
    quiet = adapters.run_bootstrap_sweep(synthetic_sweep(0.001), 1e21, num_samples=40)
    loud = adapters.run_bootstrap_sweep(synthetic_sweep(0.03), 1e21, num_samples=40)
    width = {
        name: b["parameters_exponent"][2] - b["parameters_exponent"][1]
        for name, b in (("q", quiet), ("l", loud))
    }
    assert width["l"] > 2 * width["q"]


def test_bootstrap_resamples_runs_not_only_seeds(adapters):
    """Scatter between sizes that every seed shares (a point landing low for a reason the seeds do not
    vary, e.g. a lucky shape) is uncertainty too: with identical seeds, an interval must still open."""
    rng = np.random.default_rng(1)
    records = []
    for c, n, d, loss in synthetic_sweep(noise=0.0, seeds=1):
        shift = rng.normal(0, 0.01)  # one draw per point, shared by its two seeds
        records += [(c, n, d, loss + shift), (c, n, d, loss + shift)]
    _, low, high = adapters.run_bootstrap_sweep(records, 1e21, num_samples=40)["parameters_exponent"]
    assert high - low > 0.01


def plain_vertex(records, budget):
    """``(log N, loss)`` at the vertex of a parabola in log N through the seed means at ``budget``."""
    sizes = sorted({r[1] for r in records if r[0] == budget})
    losses = [np.mean([r[3] for r in records if r[0] == budget and r[1] == n]) for n in sizes]
    c2, c1, c0 = np.polyfit(np.log(sizes), losses, 2)
    return -c1 / (2 * c2), c0 - c1**2 / (4 * c2)


def test_bootstrap_without_noise_collapses_to_the_plain_fit(adapters):
    """No noise and identical seeds, seeds-only resampling: every draw is the data itself, so the
    interval is a point, and the point is the plain fit written here (a parabola in log N through
    the five sizes of each budget, then least squares of log N_opt on log C)."""
    records = synthetic_sweep(noise=0.0)
    boot = adapters.run_bootstrap_sweep(records, 1e21, num_samples=5, sizes=False)
    estimate, low, high = boot["parameters_exponent"]
    assert low == pytest.approx(estimate) and high == pytest.approx(estimate)
    budgets = sorted({r[0] for r in records})
    log_n = [plain_vertex(records, c)[0] for c in budgets]
    slope = np.polyfit(np.log(budgets), log_n, 1)[0]
    assert estimate == pytest.approx(slope, abs=1e-6)


# ---- the compute frontier, its held-out check and the submitted loss


def frontier_sweep(noise, top_factor=1.0):
    """:func:`synthetic_sweep` with each budget's curve shifted so its vertex lies on the pure power
    law ``L = 40·C^-0.07`` (a frontier without a floor), the top budget's losses times
    ``top_factor``."""
    records = []
    for c, n, d, loss in synthetic_sweep(noise):
        n_opt = float(true_optimal_parameters(c))
        vertex = float(law_loss(n_opt, c / (6 * n_opt)))
        shifted = loss - vertex + 40 * c**-0.07
        records.append((c, n, d, shifted * (top_factor if c == 1e19 else 1.0)))
    return records


def test_compute_frontier_is_the_power_law_through_the_vertex_losses(adapters):
    """Without noise and with seeds-only resampling, the frontier's loss at the target is the plain
    fit written here: the vertex loss of a parabola in log N per budget, then least squares of
    log loss on log C, extrapolated."""
    records = synthetic_sweep(noise=0.0)
    frontier = adapters.run_predict(records, 1e21, num_samples=4, sizes=False)["frontier_loss"]
    budgets = sorted({r[0] for r in records})
    log_loss = [math.log(plain_vertex(records, c)[1]) for c in budgets]
    slope, intercept = np.polyfit(np.log(budgets), log_loss, 1)
    expected = math.exp(intercept + slope * math.log(1e21))
    assert frontier["estimate"] == pytest.approx(expected, rel=1e-6)
    assert frontier["low"] == pytest.approx(expected, rel=1e-6)


def test_holdout_check_passes_a_frontier_that_holds(adapters):
    """Vertices on a power law in C: fitted on the three lower budgets, the frontier's prediction at
    the top one matches the vertex loss measured there (the plain parabola, written here)."""
    records = frontier_sweep(noise=0.002)
    holdout = adapters.run_holdout_check(records, num_samples=40)
    top = max(r[0] for r in records)
    assert holdout["budget"] == pytest.approx(top)
    assert holdout["measured"] == pytest.approx(plain_vertex(records, top)[1], abs=1e-3)
    estimate, low, high = holdout["predicted"]
    assert low <= estimate <= high
    assert estimate == pytest.approx(40 * top**-0.07, rel=0.005)
    assert holdout["inside"] is True


def test_holdout_check_catches_losses_that_fall_faster(adapters):
    """The top budget's losses 8% below the frontier of the lower budgets (the shape this lab's
    sweeps have): the check reports it below the predicted interval, by about that much."""
    holdout = adapters.run_holdout_check(frontier_sweep(noise=0.002, top_factor=0.92), num_samples=40)
    estimate, low, _ = holdout["predicted"]
    assert holdout["inside"] is False and holdout["measured"] < low
    assert (holdout["measured"] - estimate) / estimate == pytest.approx(-0.08, abs=0.01)


def test_holdout_correction_scales_the_frontier_by_the_held_out_miss(adapters):
    """The correction multiplies the target's frontier loss by measured / predicted at the held-out
    budget: about 1 when the frontier holds, below 0.95 when the top budget is 8% low."""
    records = frontier_sweep(noise=0.002)
    plain = adapters.run_predict(records, 1e21, num_samples=10)["frontier_loss"]["estimate"]
    holds = adapters.run_holdout_check(records, num_samples=10, target_budget=1e21)
    assert holds["corrected"] == pytest.approx(plain, rel=0.01)
    bent = frontier_sweep(noise=0.002, top_factor=0.92)
    plain_bent = adapters.run_predict(bent, 1e21, num_samples=10)["frontier_loss"]["estimate"]
    h = adapters.run_holdout_check(bent, num_samples=10, target_budget=1e21)
    assert h["corrected"] == pytest.approx(plain_bent * h["measured"] / h["predicted"][0], rel=1e-6)
    assert h["corrected"] < 0.95 * plain_bent


def test_holdout_check_needs_three_budgets(adapters):
    records = synthetic_sweep(noise=0.002, budgets=(1e18, 1e19))
    assert adapters.run_holdout_check(records, num_samples=10) is None


def hull(*intervals):
    return min(i["low"] for i in intervals), max(i["high"] for i in intervals)


def test_submitted_loss_spans_the_frontier_and_the_law(adapters):
    """Without a held-out check the submission stakes the frontier's estimate in the hull of the
    frontier's and the law's intervals. On data from a law with a floor (E = 1.69) the frontier,
    which has none, runs below the law 100x out, so the hull differs from either interval; the
    true loss lies inside."""
    target = 1e21
    submission = adapters.run_predict(synthetic_sweep(noise=0.002), target, num_samples=30)
    frontier, law, loss = submission["frontier_loss"], submission["law_loss"], submission["loss"]
    assert frontier["high"] < law["low"]  # the two readings do not overlap here
    assert loss["estimate"] == frontier["estimate"]
    assert (loss["low"], loss["high"]) == pytest.approx(hull(frontier, law))
    n_true = float(true_optimal_parameters(target))
    assert loss["low"] <= float(law_loss(n_true, target / (6 * n_true))) <= loss["high"]


def test_submitted_loss_with_the_held_out_correction(adapters):
    """With the held-out check, the estimate is the corrected frontier's and the interval the hull
    of all three; when the top budget falls 8% below the frontier, the hull opens below both fits'
    intervals."""
    target = 1e21
    submission = adapters.run_predict(frontier_sweep(0.002, top_factor=0.92), target, 30, holdout=True)
    frontier, law, loss = submission["frontier_loss"], submission["law_loss"], submission["loss"]
    corrected = submission["holdout"]["corrected_loss"]
    assert loss["estimate"] == corrected["estimate"]
    assert (loss["low"], loss["high"]) == pytest.approx(hull(frontier, law, corrected))
    assert loss["low"] < min(frontier["low"], law["low"])


def test_submitted_loss_covers_a_frontier_without_a_floor(adapters):
    """Vertices on a pure power law in C: the truth 100x out is the frontier's, and the submitted
    interval holds it, however the parametric law extrapolates."""
    target = 1e21
    loss = adapters.run_predict(frontier_sweep(noise=0.002), target, num_samples=30, holdout=True)["loss"]
    assert loss["low"] <= 40 * target**-0.07 <= loss["high"]
    assert loss["estimate"] == pytest.approx(40 * target**-0.07, rel=0.01)


# ---- predict and check


def test_predict_then_check_on_a_miniature(adapters, tmp_path):
    records = synthetic_sweep(0.003, budgets=(3e10, 1e11, 3e11, 1e12))  # the lab's own scale
    submission = adapters.run_predict(records, 1e14, num_samples=30)
    assert submission["target_budget"] == pytest.approx(1e14)
    for name in ("parameters", "tokens", "loss"):
        entry = submission[name]
        assert entry["low"] <= entry["estimate"] <= entry["high"]
    assert submission["parameters"]["estimate"] * submission["tokens"]["estimate"] * 6 == pytest.approx(
        1e14, rel=0.05
    )
    predicted = submission["loss"]["estimate"]
    calls = []

    def on_target(req):  # a run that lands exactly on the prediction
        calls.append(req)
        return predicted, predicted

    graded = adapters.run_check(submission, tmp_path / "a.sqlite", 1e15, on_target)
    assert graded["inside"] is True and graded["loss"].startswith("inside")
    assert len(calls) == 1 and calls[0]["train_flops"] == pytest.approx(1e14)
    miss = adapters.run_check(
        submission, tmp_path / "b.sqlite", 1e15, lambda req: (predicted + 1, predicted + 1)
    )
    assert miss["inside"] is False and miss["loss"] == "above"


@pytest.mark.slow
def test_miniature_sweep_predict_check_end_to_end(tmp_path):
    """The script's whole workflow with real training on a small structured token array: a 3-budget
    sweep, its fits and plots, the submission, and a check at 10x the top budget (about a minute)."""
    import json
    import subprocess
    import sys

    from tests.grading import child_env

    vocab, rng = 64, np.random.default_rng(0)
    tokens = np.tile(rng.integers(0, vocab, 97), 2000)
    flip = rng.random(tokens.size) < 0.1
    tokens[flip] = rng.integers(0, vocab, flip.sum())
    np.save(tmp_path / "train.npy", tokens[:180000].astype(np.uint16))
    np.save(tmp_path / "val.npy", tokens[180000:].astype(np.uint16))
    common = [
        "--db-path", str(tmp_path / "ledger.sqlite"), "--out-dir", str(tmp_path / "out"), "--vocab-size", "64",
        "--context-length", "32", "--train-data", str(tmp_path / "train.npy"), "--val-data", str(tmp_path / "val.npy"),
        "--val-windows", "64", "--total-budget", "1e12",
    ]  # fmt: skip
    sweep = ["--budgets", "1e9", "3e9", "1e10", "--bootstrap", "20", "--target-budget", "1e11"]

    def lab(*args):
        done = subprocess.run(
            [sys.executable, "scripts/scaling_lab.py", *args],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=600,
        )
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
        return done

    out = lab("sweep", *common, *sweep).stdout
    assert "a (N_opt ~ C^a)" in out and "prediction at C = 1e+11" in out
    fits = tmp_path / "out" / "fits"
    for name in ("sweep_isoflops.png", "sweep_n_opt.png", "sweep_loss.png"):
        assert (fits / name).stat().st_size > 0
    submission = json.loads((fits / "submission.json").read_text())
    assert submission["loss"]["low"] <= submission["loss"]["estimate"] <= submission["loss"]["high"]
    again = lab("predict", *common, *sweep).stdout  # every run cached: free
    assert "prediction at C = 1e+11" in again
    checked = lab("check", *common).stdout
    assert "predicted loss" in checked and ("inside" in checked or "above" in checked or "below" in checked)
