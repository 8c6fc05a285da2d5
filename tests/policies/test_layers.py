"""Reusable layers: shapes, masks (incl. fully empty ones) and published identities."""

from __future__ import annotations

import torch

from simab.policies.layers import (
    ActivationUnitAttention,
    CrossNetworkV2,
    EmbeddingBank,
    FactorizationMachine,
    MultiHeadTargetAttention,
    TransformerBlock,
    masked_mean,
    masked_softmax,
)


def test_embedding_bank_shares_tables_and_zeroes_padding(spec):
    bank = EmbeddingBank(spec, 4)
    ids = torch.tensor([[0, 3]])
    assert torch.equal(bank("item", ids)[0, 0], torch.zeros(4))
    # seq_item, ll_item and item all read the same table
    assert bank.tables["item"].num_embeddings == spec.n_items
    assert bank.tables["scenario"].padding_idx is None  # scenario 0 is a real scenario
    assert len([k for k in bank.tables if k.startswith("profile")]) == len(spec.profile_sizes)


def test_masked_mean_and_empty_rows():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = masked_mean(x, mask)
    assert torch.equal(out, torch.tensor([[2.0], [0.0]]))


def test_masked_softmax_empty_row_is_zero_not_nan():
    w = masked_softmax(torch.randn(2, 3), torch.tensor([[True, False, True], [False, False, False]]))
    assert torch.allclose(w[0].sum(), torch.tensor(1.0)) and w[0, 1] == 0
    assert torch.equal(w[1], torch.zeros(3))


def test_fm_equals_pairwise_sum():
    fields = torch.randn(2, 5, 4)
    pairwise = sum((fields[:, i] * fields[:, j]).sum(-1) for i in range(5) for j in range(i + 1, 5))
    assert torch.allclose(FactorizationMachine()(fields).squeeze(-1), pairwise, atol=1e-5)


def test_cross_v2_one_layer_formula():
    net = CrossNetworkV2(3, 1)
    x0 = torch.randn(4, 3)
    layer = net.layers[0]
    assert torch.allclose(net(x0), x0 * (x0 @ layer.weight.T + layer.bias) + x0)


def test_target_attentions_ignore_padding_and_survive_empty_masks():
    torch.manual_seed(0)
    b, c, n, d = 3, 2, 5, 8
    q, k = torch.randn(b, c, d), torch.randn(b, n, d)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 3:] = False
    mask[2] = False
    for att in (ActivationUnitAttention(d, [16, 8]), ActivationUnitAttention(d, [16], softmax=True),
                MultiHeadTargetAttention(d, d, d, n_heads=2)):
        out = att(q, k, mask)
        assert out.shape == (b, c, d) and torch.isfinite(out).all()
        k2 = k.clone()
        k2[1, 3:] = 1e3  # changing padded positions must not change the output
        k2[2] = -1e3
        assert torch.allclose(att(q, k2, mask), out, atol=1e-5)


def test_activation_unit_matches_concatenated_form():
    """The factored first layer equals Linear([q, k, q-k, q*k]) of DIN's figure 2."""
    torch.manual_seed(1)
    d, h = 4, 6
    att = ActivationUnitAttention(d, [h])
    q, k = torch.randn(2, 3, d), torch.randn(2, 5, d)
    mask = torch.ones(2, 5, dtype=torch.bool)
    w = torch.cat([att.w_q.weight, att.w_k.weight, att.w_d.weight, att.w_p.weight], dim=1)  # [h, 4d]
    qq, kk = q.unsqueeze(2).expand(2, 3, 5, d), k.unsqueeze(1).expand(2, 3, 5, d)
    concat = torch.cat([qq, kk, qq - kk, qq * kk], dim=-1)
    # Linear([q,k,q-k,q*k]) with blocks (A, B, D, P) = A q + B k + D (q-k) + P (q*k)
    hidden = torch.relu(concat @ w.T + att.w_q.bias)
    scores = att.rest(hidden).squeeze(-1)
    expected = torch.einsum("bcl,bld->bcd", scores, k)
    assert torch.allclose(att(q, k, mask), expected, atol=1e-5)


def test_transformer_block_masks_and_no_nan():
    block = TransformerBlock(8, n_heads=2)
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = block(x, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 2:], torch.zeros(2, 8)) and torch.equal(out[1], torch.zeros(4, 8))
