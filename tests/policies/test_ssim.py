"""SSIM (seed 002): STE, epsilon mask, KL direction, towers, the two phases, reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simab.errors import SimabError
from simab.policies import ssim as ssim_mod
from simab.policies import trainer as trainer_mod
from simab.policies.base import build_policy
from simab.policies.ssim import SHARED_KEY, RowSource, load_shared, straight_through

TINY = {"embedding_dim": 4, "mlp_units": [16], "selector_units": [8]}
FAST = {"epochs": 1, "batch_size": 100, "max_steps": 3, "progress": False}


def policy(spec, **params):
    return build_policy("ssim", {**TINY, **params}, spec, seed=0)


def batch_of(source, n=64):
    return next(source.batches(n, groups=("profile", "scenario", "target", "short_seq")))


def test_ste_forward_is_hard_and_backward_is_identity():
    x = torch.tensor([-0.3, 0.0, 0.2, 1.5], requires_grad=True)
    y = straight_through(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # identity: upstream gradient passes unchanged


@pytest.mark.parametrize("eps", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("gate_grad", ["straight", "relu"])
def test_mask_respects_epsilon_and_gate_gradient(spec, eps, gate_grad):
    pol = policy(spec, epsilon=eps, gate_grad=gate_grad)
    p = torch.linspace(0.01, 0.99, 50, requires_grad=True)
    g = pol.mask(p)
    assert torch.equal(g.detach(), (p > eps).float())
    g.sum().backward()
    if gate_grad == "straight":  # dg/dp = 1 on both sides: a row below eps still gets the MSR gradient
        assert torch.equal(p.grad, torch.ones_like(p))
    else:  # gradient of relu(p - eps) through the STE: 1 above the threshold, 0 below
        assert torch.equal(p.grad, (p > eps).float())


def test_soft_mask_without_ste_is_the_score(spec):
    pol = policy(spec, ste=False)
    p = torch.rand(10)
    assert torch.equal(pol.mask(p), p)


def test_kl_term_pushes_selector_scores_up(spec, small_source):
    """Same init, same data: 20 steps with lambda = 1 end with a higher mean p than with
    lambda = 0 (KL(1||G) = -log p has gradient -1/p < 0 everywhere)."""
    means = {}
    for lam in (0.0, 1.0):
        pol = policy(spec, kl_weight=lam, kl_warmup_steps=0)
        pol.train()
        opt = torch.optim.SGD(pol.selector.parameters(), lr=0.5)
        b = batch_of(small_source, 200)
        for _ in range(20):
            opt.zero_grad()
            loss, _ = pol.loss(b, pol(b))
            loss.backward()
            opt.step()
        pol.eval()
        means[lam] = float(pol.selector_score(b).mean().detach())
    assert means[1.0] > means[0.0] + 0.05  # 0.05: well above float noise, well below the observed gap


def test_kl_weight_warms_up_linearly(spec):
    pol = policy(spec, kl_weight=0.2, kl_warmup_steps=100)
    got = []
    for step in (0, 25, 100, 400):
        pol.search_step = step
        got.append(pol.kl_weight())
    assert got == pytest.approx([0.0, 0.05, 0.2, 0.2])  # 0.2 * min(step / 100, 1)
    assert policy(spec, kl_weight=0.2, kl_warmup_steps=0).kl_weight() == 0.2


@pytest.mark.parametrize("backbone", ["star", "dnn", "hmoe"])
@pytest.mark.parametrize("sh_norm", ["row", "tower"])
def test_towers_and_loss_forms(spec, small_source, backbone, sh_norm):
    """Own column of the towers = the backbone's logit.  ``sh_norm = "row"``: a shared row
    keeps its own tower's cross-entropy at weight 1 and adds every other tower's; ``"tower"``:
    each tower averages its BCE over its own rows and the rows shared into it, weighted by
    its scenario's share of the batch (written out below as a loop over towers).  An
    unshared batch is the plain MT loss in both.  Tolerances: float32 sums in another order."""
    pol = policy(spec, backbone=backbone, sh_norm=sh_norm)
    b = batch_of(small_source, 32)
    pol.eval()
    rows = torch.arange(32)
    towers = pol.all_towers(b, rows)
    own = pol.backbone(b)[:, 0]
    assert torch.allclose(towers.gather(1, b["scenario"].unsqueeze(1)).squeeze(1), own, atol=1e-5)
    pol.train()
    pol.phase = "retrain"
    y = b["label"][:, 0].float()
    shared = torch.arange(32) % 3 == 0
    b2 = {**b, SHARED_KEY: shared}
    logits = pol(b2)
    loss, parts = pol.loss(b2, logits)
    # STAR normalises with the statistics of the rows evaluated together, so the towers are
    # computed on the shared rows only, as the loss does
    srows = torch.nonzero(shared).squeeze(1)
    towers = pol.all_towers(b2, srows)
    per = F.binary_cross_entropy_with_logits(towers, y[srows].unsqueeze(1).expand_as(towers), reduction="none")
    own_bce = F.binary_cross_entropy_with_logits(logits[:, 0], y, reduction="none")
    other = torch.zeros(32).index_put((srows,), per.sum(1) - per.gather(1, b["scenario"][srows, None]).squeeze(1))
    if sh_norm == "row":
        want = (own_bce + other).mean()
    else:
        want = torch.zeros(())
        scen = b["scenario"]
        for s in range(pol.n_scenarios):
            terms = [own_bce[i] for i in range(32) if scen[i] == s]
            n_own = len(terms)
            terms += [per[j, s] for j, i in enumerate(srows.tolist()) if scen[i] != s]
            if n_own:
                want = want + n_own / 32 * torch.stack(terms).mean()
    assert torch.allclose(loss, want, atol=1e-5)
    assert float(parts["shared_frac"]) == pytest.approx(float(shared.float().mean()))
    b0 = {**b, SHARED_KEY: torch.zeros(32, dtype=torch.bool)}  # nothing shared: the plain MT loss
    loss0, _ = pol.loss(b0, pol(b0))
    assert torch.allclose(loss0, own_bce.mean(), atol=1e-5)


def test_eval_scores_are_the_backbone(spec, small_source):
    pol = policy(spec, backbone="hmoe")
    b = batch_of(small_source, 16)
    assert torch.equal(pol.score(b), pol.backbone.score(b))


@pytest.mark.parametrize(("warm_start", "search"), [(True, "frozen"), (True, "joint"), (False, "joint")])
def test_retrain_starts_from_initial_weights(spec, small_source, monkeypatch, warm_start, search):
    """Warm start: a plain multi-task pass from the initial weights, then the search from
    its result (a frozen search leaves the backbone as it was); the retrain always restarts
    from the initial weights."""
    pol = policy(spec, warm_start=warm_start, search=search)
    ends = {}
    init = {k: v.clone() for k, v in pol.backbone.state_dict().items()}
    seen = []
    real_fit = trainer_mod.fit

    def spy(model, train, val, config):
        seen.append((model.phase, {k: v.clone() for k, v in model.backbone.state_dict().items()}))
        out = real_fit(model, train, val, config)
        ends[model.phase] = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        return out

    monkeypatch.setattr(trainer_mod, "fit", spy)
    pol.fit(small_source, None, **FAST)
    phases = [s[0] for s in seen]
    assert phases == (["mt", "search", "retrain"] if warm_start else ["search", "retrain"])
    starts = {phase: state for phase, state in seen}
    assert all(torch.equal(starts["retrain"][k], init[k]) for k in init)
    assert all(torch.equal(seen[0][1][k], init[k]) for k in init)
    if warm_start:  # the search starts where the multi-task pass ended, not from the initial weights
        assert not all(torch.equal(starts["search"][k], init[k]) for k in init)
    frozen = all(torch.equal(starts["search"][k], ends["search"][k]) for k in init)
    assert frozen == (search == "frozen")
    # the search phase really changed the weights, so the reset is not vacuous
    assert not all(torch.equal(pol.initial_backbone_state[k], pol.backbone.state_dict()[k]) for k in init)
    assert not any(p.requires_grad for p in pol.selector.parameters())


def test_selection_ratio_and_reuse_reproduce_the_training_set(spec, small_source, world, tmp_path):
    out = tmp_path / "shared.parquet"
    pol = policy(spec, share_ratio=0.25, shared_out=str(out))
    pol.fit(small_source, None, **FAST)
    table = pol.shared_table
    mask = table.column("shared").to_numpy(zero_copy_only=False)
    logit, scen = table.column("logit").to_numpy(), table.column("scenario").to_numpy()
    for s in np.unique(scen):  # top share of each scenario by selector score
        m, sh = scen == s, mask[scen == s]
        assert sh.sum() == round(0.25 * m.sum())
        assert logit[m][sh].min() >= logit[m][~sh].max()
    reloaded = load_shared(out, small_source)
    assert np.array_equal(reloaded, mask)
    # another backbone trained on the reused instances sees exactly the same shared rows
    dcn = policy(spec, backbone="dcn", shared_in=str(out))
    a = list(RowSource(small_source, shared=mask).batches(100, shuffle=True, seed=3))
    b = list(RowSource(small_source, shared=reloaded).batches(100, shuffle=True, seed=3))
    assert all(torch.equal(x[SHARED_KEY], y[SHARED_KEY]) and torch.equal(x["item"], y["item"]) 
               for x, y in zip(a, b, strict=True))
    dcn.fit(small_source, None, **FAST)
    with pytest.raises(SimabError, match="fingerprint"):
        load_shared(out, world.source(600, seed=99))


def test_global_ratio_scope_ranks_all_rows_together(spec, small_source):
    pol = policy(spec, share_ratio=0.3, ratio_scope="global")
    table = pol.select(small_source)
    mask = table.column("shared").to_numpy(zero_copy_only=False)
    logit = table.column("logit").to_numpy()
    assert mask.sum() == round(0.3 * small_source.n_rows)
    assert logit[mask].min() >= logit[~mask].max()


def test_random_selection_skips_search(spec, small_source):
    pol = policy(spec, selection="random", share_ratio=0.5)
    before = {k: v.clone() for k, v in pol.selector.state_dict().items()}
    m = pol.fit(small_source, None, **FAST)
    # per-scenario rounding moves the share by at most half a row per scenario (3 scenarios)
    assert "search" not in m and m["shared_frac"] == pytest.approx(0.5, abs=1.5 / small_source.n_rows)
    assert all(torch.equal(before[k], v) for k, v in pol.selector.state_dict().items())


def test_bad_params_are_simab_errors(spec):
    with pytest.raises(SimabError, match="backbone"):
        policy(spec, backbone="din")
    with pytest.raises(SimabError, match="share_ratio|0, 1"):
        policy(spec, share_ratio=1.5)


def test_checkpoint_round_trip_keeps_scores_and_shared_instances(spec, small_source, tmp_path):
    pol = policy(spec, selection="random")
    pol.fit(small_source, None, **FAST)
    pol.save(tmp_path / "ckpt")
    back = type(pol).load(tmp_path / "ckpt")
    b = batch_of(small_source, 16)
    assert torch.equal(back.score(b), pol.score(b))
    assert np.array_equal(load_shared(tmp_path / "ckpt" / ssim_mod.SHARED_FILE, small_source),
                          pol.shared_table.column("shared").to_numpy(zero_copy_only=False))
    # the loaded policy carries the selection of its search (read back from the same file)
    assert back.shared_table.equals(pol.shared_table)


def test_campaign_training_path_runs_both_phases(spec, small_source, tmp_path):
    """``load_or_train`` (what a campaign arm uses) goes through ``SSIM.fit``: the cached
    policy is the retrained backbone, with the selected share of shared instances."""
    from simab.policies.checkpoint import load_or_train
    from simab.policies.trainer import TrainerConfig

    config = TrainerConfig(epochs=1, batch_size=100, max_steps=3, progress=False)
    pol, metrics, cached = load_or_train(tmp_path, {"w": 1}, "ssim", {**TINY, "share_ratio": 0.3}, spec,
                                         0, small_source, None, config)
    assert not cached and pol.phase == "retrain"
    assert "search" in metrics and metrics["shared_frac"] == pytest.approx(0.3, abs=0.01)
    # the cache entry keeps the selection: a cached load says which rows the search shared
    again, _, cached = load_or_train(tmp_path, {"w": 1}, "ssim", {**TINY, "share_ratio": 0.3}, spec,
                                     0, small_source, None, config)
    assert cached and again.shared_table.equals(pol.shared_table)


@pytest.mark.parametrize("with_pop", [False, True])
def test_selector_reads_popularity_only_when_asked(spec, small_source, with_pop):
    pol = policy(spec, selector_pop=with_pop)
    b = batch_of(small_source, 16)
    moved = {**b, "item_pop": b["item_pop"] + 3.0}
    changed = not torch.equal(pol.selector_logit(b), pol.selector_logit(moved))
    assert changed == with_pop


def test_frozen_search_needs_the_warm_start(spec):
    with pytest.raises(SimabError, match="warm_start"):
        policy(spec, warm_start=False, search="frozen")


def test_random_selection_at_the_learned_ratio_and_label_matched(spec, small_source, tmp_path):
    """``ratio_of`` reads the ratio a learned SSIM published in ``selections_dir``;
    ``match_labels`` draws, in every (scenario, label) group, exactly as many random rows as
    the learned selection shared there (not the same rows)."""
    learned = policy(spec, share_ratio=0.3, selections_dir=str(tmp_path))
    learned.fit(small_source, None, **FAST)
    want = learned.shared_table.column("shared").to_numpy(zero_copy_only=False)
    plain = policy(spec, selection="random", ratio_of=str(tmp_path))
    assert plain.fit(small_source, None, **FAST)["share_ratio"] == pytest.approx(0.3)
    matched = policy(spec, selection="random", ratio_of=str(tmp_path), match_labels=True)
    m = matched.fit(small_source, None, **FAST)
    got = matched.shared_table.column("shared").to_numpy(zero_copy_only=False)
    scen, label = small_source.scenario, small_source.label > 0.5
    for s in np.unique(scen):
        for y in (False, True):
            g = (scen == s) & (label == y)
            assert got[g].sum() == want[g].sum()
    assert m["shared_frac"] == pytest.approx(want.mean()) and not np.array_equal(got, want)
    with pytest.raises(SimabError, match="match_labels"):
        policy(spec, selection="random", match_labels=True).fit(small_source, None, **FAST)


def test_ratio_grid_may_choose_not_to_share(spec, small_source, tmp_path):
    """Issue #30, item 4: the grid the seed's ratio is tuned over may hold 0 (share nothing:
    the multi-task backbone), so validation can decline sharing where every sharing hurts;
    a random selection at the learned ratio (``ratio_of``) then shares nothing either."""
    val = small_source
    learned = policy(spec, ratio_grid=[0.0, 0.5], selections_dir=str(tmp_path))
    m = learned.fit(small_source, val, **FAST, monitor="logloss")
    assert [r["ratio"] for r in m["ratio_search"]] == [0.0, 0.5]
    chosen = min(m["ratio_search"], key=lambda r: r["logloss"])["ratio"]
    assert m["share_ratio"] == chosen
    only_zero = policy(spec, ratio_grid=[0.0], selections_dir=str(tmp_path / "zero"))
    z = only_zero.fit(small_source, val, **FAST, monitor="logloss")
    assert z["share_ratio"] == 0.0 and z["shared_frac"] == 0.0
    matched = policy(spec, selection="random", ratio_of=str(tmp_path / "zero"), match_labels=True)
    assert matched.fit(small_source, val, **FAST)["shared_frac"] == 0.0
    with pytest.raises(SimabError, match=r"ratio_grid|\[0, 1\]"):
        policy(spec, ratio_grid=[-0.1, 0.5])
