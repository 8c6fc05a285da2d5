"""The CUDA path, device-agnostic: each test runs on the CPU and, where a CUDA device is
present, on it (skipped otherwise).  Training with AMP, scoring parity with the CPU, a
checkpoint written from the device loading on the CPU, serving a batch on the device
(``scripts/gpu_check.sh`` is the end-to-end check for a machine with a GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simab.policies.base import build_policy
from simab.policies.checkpoint import load_checkpoint
from simab.policies.synthetic import random_request_batch

from .conftest import TINY

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))
DEVICES = ["cpu", CUDA]
#: The CPU case of the longer tests repeats what other tests cover on the CPU (learning,
#: serving): slow there; the CUDA case is what the test is for.
DEVICES_CUDA_FAST = [pytest.param("cpu", marks=pytest.mark.slow), CUDA]
#: LCN small enough for a unit test (its pyramid needs k1 > k2 below the history length).
PARAMS = {"din": TINY, "lcn": {**TINY, "fsa_dim": 8, "k1": 16, "k2": 4}}


def lifelong_batch(spec, b: int, c: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = random_request_batch(spec, b, c, g)
    n = spec.lifelong_len
    lengths = torch.randint(0, n + 1, (b,), generator=g)
    mask = torch.arange(n)[None, :] >= (n - lengths)[:, None]
    batch.update(ll_mask=mask, ll_item=torch.randint(1, spec.n_items, (b, n), generator=g) * mask,
                 ll_cat=torch.randint(1, spec.n_categories, (b, n), generator=g) * mask,
                 ll_action=torch.randint(1, spec.n_actions, (b, n), generator=g) * mask,
                 ll_gap=torch.randint(1, spec.n_gap_buckets, (b, n), generator=g) * mask)
    return batch


@pytest.mark.parametrize("device", DEVICES_CUDA_FAST)
@pytest.mark.parametrize("name", ["din", "lcn"])
def test_training_with_amp_on_the_device_learns(device, name, spec, train_source, val_source):
    """AMP acts on CUDA only (bf16 where supported, else fp16 with a gradient scaler); the
    model learns either way: the synthetic world's signals lift the held-out AUC well above
    chance in a few hundred steps (0.5 is chance; the models reach 0.70-0.80 in an epoch)."""
    policy = build_policy(name, PARAMS[name], spec, seed=0)
    metrics = policy.fit(train_source, val_source, device=device, amp=True, max_steps=150, batch_size=128,
                         lr=3e-3, progress=False)
    assert metrics["train"]["device"].startswith(device)
    assert math.isfinite(metrics["logloss"]) and metrics["auc"] > 0.6


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["din", "lcn"])
def test_scores_on_the_device_equal_the_cpu_scores(device, name, spec):
    policy = build_policy(name, PARAMS[name], spec, seed=0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in policy.parameters():  # unit-scale weights: scores that differ between candidates
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    policy.eval()
    batch = lifelong_batch(spec, 16, 5, seed=2)
    on_cpu = policy.score(batch).numpy()
    on_device = policy.to(device).score(batch).numpy()  # the batch stays on the CPU: score moves it
    # float32 on both; a GPU's kernels sum in another order (and may use TF32 for matmuls):
    # 1e-3 of the scores' scale covers that and is far below the gaps between candidates
    assert np.abs(on_device - on_cpu).max() <= 1e-3 * np.abs(on_cpu).max()


@pytest.mark.parametrize("device", DEVICES)
def test_a_checkpoint_written_on_the_device_loads_on_the_cpu(device, spec, tmp_path):
    policy = build_policy("lcn", PARAMS["lcn"], spec, seed=0).to(device)
    policy.save(tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", name="lcn")
    assert loaded.device.type == "cpu"
    batch = lifelong_batch(spec, 4, 3, seed=3)
    assert np.allclose(loaded.score(batch).numpy(), policy.score(batch).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES_CUDA_FAST)
def test_a_din_arm_serves_on_the_device(device, tmp_path, monkeypatch):
    """``serving.device`` puts the arm's model on the device; the slates match the CPU's
    (the campaign's logits agree within float tolerance, and a flip of two near-tied
    candidates changes a slate only rarely)."""
    monkeypatch.setenv("SIMAB_QUIET", "1")
    from simab.eventlog import digest, read_table
    from simab.run.runner import run_campaign
    from simab.spec import load_campaign

    def run(dev: str):
        over = {"duration_days": 0.3, "shards": 1,
                "world": {"n_users": 120, "pre_period_days": 0.5, "n_shop_items": 600, "n_content_items": 400,
                          "n_shops": 40},
                "arms": {"control": {"policy": "popularity", "share": 0.5},
                         "treatment": {"policy": "din", "share": 0.5, "params": {"embedding_dim": 8}}},
                "training": {"cache_dir": str(tmp_path / "cache"), "epochs": 1, "max_steps": 20},
                "serving": {"device": dev}}
        res = run_campaign(load_campaign(overrides=over), out=tmp_path / dev, workers=1, report=False)
        return read_table(res.run_dir, "exposures").sort_by([("request", "ascending"), ("position", "ascending")])

    cpu, dev = run("cpu"), run(device)
    assert cpu.num_rows > 200
    if device == "cpu":
        assert digest(cpu, ["request", "position"]) == digest(dev, ["request", "position"])
        return
    same = np.mean(cpu.column("item").to_numpy() == dev.column("item").to_numpy()) if cpu.num_rows == dev.num_rows \
        else 0.0
    assert same > 0.95


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_serving_on_cuda_without_cuda_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")
    from simab.errors import SimabError
    from simab.run.runner import run_campaign
    from simab.spec import load_campaign

    spec = load_campaign(overrides={"world": {"n_users": 50}, "serving": {"device": "cuda"},
                                    "training": {"cache_dir": str(tmp_path / "cache")},
                                    "arms": {"control": {"policy": "popularity", "share": 0.5},
                                             "treatment": {"policy": "din", "share": 0.5}}})
    with pytest.raises(SimabError, match="no CUDA device") as err:
        run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    assert err.value.key == "serving.device"
