"""int8 encoding on CPU (encoder/int8.py) and the folded latent cross-attention (latent_attention.py)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder import NVEmbedModel
from encoder import int8 as int8_kernels
from encoder.int8 import (
    FusedProducts,
    Int8Kernel,
    Int8Linear,
    enable_int8,
    fused_groups,
    int8_inference,
    unfuse,
)
from encoder.latent_attention import LatentAttentionConfig, LatentAttentionPooling
from encoder.testing import tiny_model

PASSAGES = [
    "the wing boundary layer and heat transfer at high pressure",
    "a bank card payment refund error",
    "the drug treatment of a disease and its symptom",
    "library catalog information retrieval and search index",
    "apple banana cherry",
    "quantum galaxy lantern harbor velvet orchestra",
    "flight airflow over a wing",
    "what is the money transfer limit of my account",
]
QUERIES = ["wing airflow", "card refund", "drug for a disease", "search a library catalog"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------------------- folded latents


@pytest.mark.parametrize("heads,dim_head", [(2, 32), (8, 32), (4, 8)])
def test_folded_cross_attention_equals_the_unfolded_one(heads, dim_head):
    torch.manual_seed(0)
    config = LatentAttentionConfig(num_latents_value=24, num_cross_heads=heads, hidden_dim=32, latent_dim=32,
                                   cross_dim_head=dim_head)
    pooling = LatentAttentionPooling(config).eval()
    hidden, mask = torch.randn(3, 11, 32), torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:], mask[2, :3] = 0, 0  # padding, and an instruction prefix left out of the pool
    pooling.fold_latents = False
    with torch.no_grad():
        reference = pooling(hidden, mask)
    pooling.fold_latents = True
    with torch.no_grad():
        folded = pooling(hidden, mask)
    assert pooling.__dict__["_folded"] is not None  # the folded path ran
    torch.testing.assert_close(folded, reference, atol=2e-6, rtol=1e-5)
    assert not any("folded" in k or "scores" in k for k in pooling.state_dict())


def test_folded_latents_follow_weight_changes_and_training_uses_the_plain_path():
    torch.manual_seed(1)
    pooling = LatentAttentionPooling(LatentAttentionConfig(16, 2, 32, 32, 32)).eval()
    hidden, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        before = pooling(hidden, mask)
        pooling.latents.mul_(3.0)  # in place, as an optimizer step changes it
        after = pooling(hidden, mask)
        pooling.fold_latents = False
        expected = pooling(hidden, mask)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, atol=2e-6, rtol=1e-5)
    pooling.fold_latents = True
    pooling.train()
    pooling(hidden, mask).sum().backward()  # gradients reach the real parameters, not a folded copy
    assert pooling.cross_attend_blocks[0].fn.to_q.weight.grad is not None
    assert pooling.latents.grad is not None


def test_folded_model_encodes_what_the_unfolded_model_does(llama):
    llama.latent_attention_model.fold_latents = False
    reference = llama.encode_passages(PASSAGES)
    llama.latent_attention_model.fold_latents = True
    np.testing.assert_allclose(llama.encode_passages(PASSAGES), reference, atol=2e-6)


# ------------------------------------------------------------------------------- int8 kernels


def test_int8_kernel_is_close_to_the_float_product_and_exact_on_outlier_rows():
    torch.manual_seed(2)
    weight, bias = torch.randn(48, 64) * 0.1, torch.randn(48)
    x = torch.randn(2, 30, 64)
    x[0, 3] *= 50.0  # a "massive activation" token
    kernel = Int8Kernel(weight, bias)
    y = kernel(x, weight, bias)
    reference = F.linear(x, weight, bias)
    assert y.shape == reference.shape
    assert _cosines(y.reshape(-1, 48).numpy(), reference.reshape(-1, 48).numpy()).min() > 0.995
    torch.testing.assert_close(y[0, 3], reference[0, 3], atol=1e-4, rtol=1e-5)  # computed in float
    plain = kernel.matmul(x.reshape(-1, 64))  # one scale for all rows: the outlier flattens the others
    assert _cosines(plain.numpy(), reference.reshape(-1, 48).numpy()).min() < _cosines(
        y.reshape(-1, 48).numpy(), reference.reshape(-1, 48).numpy()).min()
    assert kernel(torch.zeros(0, 64), weight, bias).shape == (0, 48)


def test_the_outlier_ratio_of_the_context_decides_which_rows_compute_in_float():
    torch.manual_seed(3)
    weight, bias = torch.randn(40, 64) * 0.1, torch.randn(40)
    kernel = Int8Kernel(weight, bias)
    x = torch.randn(60, 64)
    x[7] *= 5.0  # over a ratio of 3 to the median row's peak, under 20
    exact = F.linear(x[7], weight, bias)
    with int8_inference(True, outlier_ratio=3.0):
        torch.testing.assert_close(kernel.rows(x, weight, bias)[7], exact, atol=1e-4, rtol=1e-5)
    with int8_inference(True, outlier_ratio=20.0):
        assert not torch.allclose(kernel.rows(x, weight, bias)[7], exact, atol=1e-4, rtol=1e-5)
        assert torch.equal(kernel.rows(x, weight, bias), kernel.matmul(x))  # no row over 20x: one scale for all
    with pytest.raises(ValueError, match="outlier_ratio"):
        with int8_inference(True, outlier_ratio=0.5):
            pass


@pytest.mark.parametrize("shift", [0.0, 3.0, -3.0])  # mixed signs, all positive, all negative
def test_outlier_rows_leave_the_other_rows_as_if_they_were_not_there(shift):
    torch.manual_seed(6)
    weight, bias = torch.randn(40, 64) * 0.1, torch.randn(40)
    kernel = Int8Kernel(weight, bias)
    x = torch.randn(120, 64) + shift
    x[[5, 90]] *= 60.0
    before = x.clone()
    keep = torch.ones(120, dtype=torch.bool)
    keep[[5, 90]] = False
    y = kernel.rows(x, weight, bias)
    assert torch.equal(x, before)  # not the caller's tensor that is zeroed
    assert torch.equal(y[keep], kernel.matmul(x[keep]))  # the same scale as without the outlier rows
    torch.testing.assert_close(y[~keep], F.linear(x[~keep], weight, bias), atol=1e-4, rtol=1e-5)
    owned = x.clone()
    assert torch.equal(kernel.rows(owned, weight, bias, owned=True), y)


def test_int8_linear_computes_in_int8_only_inside_the_context_without_grad():
    torch.manual_seed(3)
    layer = torch.nn.Linear(64, 32)
    assert enable_int8(torch.nn.Sequential(layer)) == 1 and isinstance(layer, Int8Linear)
    x = torch.randn(10, 64)
    exact = F.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), exact)  # outside the context: float
    with int8_inference():
        torch.testing.assert_close(layer(x), exact)  # gradients on: float (training)
        with torch.no_grad():
            approx = layer(x)
    assert not torch.equal(approx, exact) and _cosines(approx.numpy(), exact.detach().numpy()).min() > 0.98
    with torch.no_grad():
        layer.weight.mul_(-1.0)  # a weight change rebuilds the twin at its next use
        with int8_inference():
            flipped = layer(x)
    assert _cosines(flipped.numpy(), F.linear(x, layer.weight, layer.bias).detach().numpy()).min() > 0.98


def test_skip_padding_computes_only_the_real_rows_and_zeros_the_padding():
    torch.manual_seed(4)
    weight, bias = torch.randn(24, 40) * 0.1, torch.randn(24)
    kernel = Int8Kernel(weight, bias)
    x = torch.randn(3, 7, 40)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 4:], mask[2, 1:] = 0, 0
    x[mask == 0] *= 6.0  # padding rows that would widen the activation scale (below the float-outlier ratio)
    with int8_kernels.skip_padding(mask):
        y = kernel(x, weight, bias)
        other = kernel(x[:, :5], weight, bias)  # not token-aligned with the mask: every row computed
    real = mask.bool()
    torch.testing.assert_close(y[real], kernel.rows(x[real], weight, bias))  # exactly the real rows, alone
    assert torch.equal(y[~real], torch.zeros_like(y[~real]))
    assert other.shape == (3, 5, 24) and other[0, 4].abs().sum() > 0
    reference = F.linear(x[real], weight, bias)
    assert _cosines(y[real].numpy(), reference.numpy()).min() > 0.99


def test_int8_encoding_ignores_what_the_padding_holds():
    llama = tiny_model("llama", hidden_size=128, intermediate_size=344)
    llama.int8 = True
    batch = llama.tokenize(PASSAGES)
    pad = batch.attention_mask == 0
    assert pad.any()
    changed = batch.input_ids.clone()
    changed[pad] = 7  # another token in every padding position
    other = type(batch)(changed, batch.attention_mask, batch.pool_mask)
    def embed(b, skip):
        with int8_kernels.skip_padding(b.attention_mask if skip else None):
            return llama(b.input_ids, b.attention_mask, b.pool_mask)

    with torch.inference_mode(), int8_inference():
        a, b = embed(batch, True), embed(other, True)
        padded_a, padded_b = embed(batch, False), embed(other, False)
    assert torch.equal(a, b)  # the padding rows were never computed
    assert not torch.equal(padded_a, padded_b)  # without skipping, they move the activation scales
    np.testing.assert_allclose(llama.encode_passages(PASSAGES, batch_size=len(PASSAGES)), a.numpy(), atol=1e-6)


# ------------------------------------------------------------------------------- fused products


def _members(sizes, in_features=64, bias=True, seed=5):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(in_features, n, bias=bias) for n in sizes]
    enable_int8(torch.nn.Sequential(*layers))
    return layers


def test_a_fused_product_equals_the_separate_int8_products_with_outliers_and_padding():
    members = _members([48, 16, 16])
    group = FusedProducts(members)
    x = torch.randn(3, 9, 64)
    x[1, 2] *= 40.0  # an outlier row: computed in float, in both forms
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 5:], mask[2, 2:] = 0, 0
    with torch.no_grad(), int8_inference(), int8_kernels.skip_padding(mask):
        separate = [m.int8_kernel()(x, m.weight, m.bias) for m in members]
        fused = [group.output(m, x) for m in members]
    for got, want in zip(fused, separate, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)  # one activation scale: float rounding only
    assert torch.equal(fused[0][0, 5:], torch.zeros_like(fused[0][0, 5:]))  # padding rows are zeros
    torch.testing.assert_close(fused[0][1, 2], F.linear(x[1, 2], members[0].weight, members[0].bias),
                               atol=1e-4, rtol=1e-5)  # the outlier row in float
    assert group._pending is None  # every kept output was taken


def test_a_fused_member_called_with_another_input_computes_its_own_output():
    members = _members([32, 24], bias=False)
    group = FusedProducts(members)
    a, b = torch.randn(10, 64), torch.randn(10, 64)
    with torch.no_grad(), int8_inference():
        first = group.output(members[0], a)
        second = group.output(members[1], b)  # not the input the first call kept an output for
        again = group.output(members[0], a)  # a second call with the same input: computed afresh
        torch.testing.assert_close(second, members[1].int8_kernel()(b, members[1].weight, None))
        torch.testing.assert_close(again, first)
        # weights changed in place: the fused kernel is rebuilt
        members[1].weight.mul_(-1.0)
        group.output(members[0], a)
        torch.testing.assert_close(group.output(members[1], a),
                                   members[1].int8_kernel()(a, members[1].weight, None))


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2"])
def test_fused_model_encodes_what_the_unfused_int8_model_does(arch):
    model = tiny_model(arch, hidden_size=128, intermediate_size=344)
    model.int8 = True
    layers = model.num_layers
    groups = fused_groups(model)
    assert len(groups) == 2 * layers  # q/k/v and gate/up of every decoder layer
    assert sorted(len(g.members) for g in groups) == [2] * layers + [3] * layers
    unfused = copy.deepcopy(model)
    copied = fused_groups(unfused)  # a deep copy has its own groups, of its own layers
    assert len(copied) == 2 * layers and copied[0].members[0] is unfused.embedding_model.layers[0].self_attn.q_proj
    mlp, copied_mlp = model.embedding_model.layers[0].mlp, unfused.embedding_model.layers[0].mlp
    assert mlp.forward.__func__ is int8_kernels._packed_mlp_forward  # MLPs run on the real rows only
    assert copied_mlp.forward.__self__ is copied_mlp  # the copy's packed forward is bound to the copy
    assert unfuse(unfused) == 2 * layers and not fused_groups(unfused)
    assert "forward" not in copied_mlp.__dict__  # back to the class's forward, padding skipped layer by layer
    fused_p, fused_q = model.encode_passages(PASSAGES, batch_size=3), model.encode_queries(QUERIES)
    plain_p, plain_q = unfused.encode_passages(PASSAGES, batch_size=3), unfused.encode_queries(QUERIES)
    np.testing.assert_allclose(fused_p, plain_p, atol=1e-6)
    np.testing.assert_allclose(fused_q, plain_q, atol=1e-6)
    attention = model.embedding_model.layers[0].self_attn
    assert attention.q_proj._int8_kernel is None  # the fused path ran, not the members' own kernels
    assert unfused.embedding_model.layers[0].self_attn.q_proj._int8_kernel is not None
    model.int8 = True  # enabling again keeps the same groups
    assert len(fused_groups(model)) == 2 * layers


def test_only_recognised_attention_and_mlp_modules_are_fused():
    class Attention(torch.nn.Module):  # q/k/v by name, but not a known decoder's attention
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj = (torch.nn.Linear(16, 16) for _ in range(3))

    module = Attention()
    enable_int8(module)
    assert not fused_groups(module)
    llama = tiny_model("llama", hidden_size=128, intermediate_size=344)
    assert enable_int8(llama, fuse=False) > 0 and not fused_groups(llama)
    mlp = llama.embedding_model.layers[0].mlp
    mlp.up_proj = torch.nn.Linear(64, 344, bias=False)  # another input width: not one product
    enable_int8(llama)
    assert mlp.gate_proj._int8_group is None and len(fused_groups(llama)) == 2 * llama.num_layers - 1


# ------------------------------------------------------------------------------- the model


def test_int8_model_agrees_with_float32_on_queries_and_passages():
    # Width 128: at the tiny models' width 32 the int8 rounding noise is out of proportion to a real model's.
    llama = tiny_model("llama", hidden_size=128, intermediate_size=344)
    reference = copy.deepcopy(llama)
    state_keys, fingerprint = list(llama.state_dict()), llama.fingerprint
    llama.int8 = True
    assert llama.precision == "int8" and reference.precision == "float32"
    passages, queries = llama.encode_passages(PASSAGES), llama.encode_queries(QUERIES)
    ref_passages, ref_queries = reference.encode_passages(PASSAGES), reference.encode_queries(QUERIES)
    assert not np.array_equal(passages, ref_passages)  # int8 really ran
    assert _cosines(passages, ref_passages).min() > 0.98
    assert _cosines(queries, ref_queries).min() > 0.98
    # The query-passage scores move little. Rank agreement needs a model whose scores are spread out, not a
    # random one (whose texts all score within a few hundredths): the slow test below checks it on the default.
    scores, ref_scores = queries @ passages.T, ref_queries @ ref_passages.T
    assert np.abs(scores - ref_scores).max() < 0.15
    # The weights, the state dict and the fingerprint are the float model's.
    assert list(llama.state_dict()) == state_keys
    llama._fingerprint = None
    assert llama.fingerprint == fingerprint
    # forward (training) stays float.
    batch = llama.tokenize(PASSAGES[:2])
    torch.testing.assert_close(llama(batch.input_ids, batch.attention_mask, batch.pool_mask),
                               reference(batch.input_ids, batch.attention_mask, batch.pool_mask))
    # A deep copy (sessions are not copyable) rebuilds its own kernels.
    np.testing.assert_allclose(copy.deepcopy(llama).encode_passages(PASSAGES), passages, atol=1e-6)
    llama.int8 = False
    np.testing.assert_allclose(llama.encode_passages(PASSAGES), ref_passages, atol=2e-6)


def test_from_pretrained_uses_int8_by_default_only_for_a_measured_model(llama, tmp_path, monkeypatch):
    from encoder import model as model_module

    llama.save_pretrained(tmp_path / "m")
    monkeypatch.delenv("NVEMBED_INT8", raising=False)
    loaded = NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu")
    assert not loaded.int8 and loaded.precision == "float32"  # its int8 cost was never measured
    assert NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu", int8=True).int8
    monkeypatch.setenv("NVEMBED_INT8", "1")
    assert NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu").int8
    assert not NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu", int8=False).int8
    monkeypatch.setenv("NVEMBED_INT8", "maybe")
    with pytest.raises(ValueError, match="NVEMBED_INT8"):
        NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu")
    # A model whose cost was measured (as the shipped default's is): int8 on a CPU unless told otherwise.
    assert loaded.int8_outlier_ratio == int8_kernels.OUTLIER_RATIO
    monkeypatch.setitem(model_module.INT8_MEASURED, loaded.fingerprint,
                        model_module.Int8Measurement(7.5, "this test"))
    monkeypatch.delenv("NVEMBED_INT8")
    measured = NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu")
    assert measured.int8 and measured.precision == "int8"
    assert measured.int8_outlier_ratio == 7.5  # the ratio its cost was measured at
    seen = []
    real_rows = Int8Kernel.rows
    monkeypatch.setattr(Int8Kernel, "rows", lambda self, *a, **k: seen.append(int8_kernels._RATIO.get())
                        or real_rows(self, *a, **k))
    measured.encode_passages(PASSAGES[:2])
    measured.int8_outlier_ratio = 2.5
    measured.encode_passages(PASSAGES[:2])
    assert seen and set(seen) == {7.5, 2.5}
    with pytest.raises(ValueError, match="int8_outlier_ratio"):
        measured.int8_outlier_ratio = 1.0
    assert not NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu", int8=False).int8
    monkeypatch.setenv("NVEMBED_INT8", "0")
    assert not NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu").int8
    monkeypatch.setattr(int8_kernels, "available", lambda: False)  # no onnxruntime: float32, no error
    monkeypatch.delenv("NVEMBED_INT8")
    assert not NVEmbedModel.from_pretrained(tmp_path / "m", device="cpu").int8


def test_int8_needs_onnxruntime(llama, monkeypatch):
    monkeypatch.setattr(int8_kernels, "available", lambda: False)
    with pytest.raises(RuntimeError, match="onnxruntime"):
        llama.int8 = True


@pytest.mark.slow
def test_the_default_in_int8_ranks_real_passages_as_float32_does(monkeypatch):
    """The real default on 96 Cranfield abstracts and 24 of its queries: int8 against float32."""
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval" / "cranfield"
    if not data.is_dir():
        pytest.skip(f"{data} not present")
    passages = [json.loads(line)["text"] for line in (data / "corpus.jsonl").open()][:96]
    queries = [json.loads(line)["text"] for line in (data / "queries.jsonl").open()][:24]
    monkeypatch.delenv("NVEMBED_INT8", raising=False)  # tests/conftest.py sets 0 for the parity tests
    assert NVEmbedModel.from_pretrained("default", device="cpu").precision == "int8", (
        "the shipped default is no longer int8 on a CPU: if it changed, measure its int8 cost "
        "(python benchmarks/int8_quality.py) and add its fingerprint to encoder.model.INT8_MEASURED")
    model = NVEmbedModel.from_pretrained("default", device="cpu", int8=False)
    ref_p, ref_q = model.encode_passages(passages), model.encode_queries(queries)
    model.int8 = True
    got_p, got_q = model.encode_passages(passages), model.encode_queries(queries)
    # Bounds from the full dev sets (benchmarks/int8_quality.py, docs/benchmarks.md): passages 0.993-0.994
    # mean, 0.958 min; queries (instruction-prefixed, short) 0.990 mean, 0.965 min.
    assert _cosines(got_p, ref_p).mean() > 0.99 and _cosines(got_p, ref_p).min() > 0.95
    assert _cosines(got_q, ref_q).mean() > 0.985 and _cosines(got_q, ref_q).min() > 0.96
    spearman = [np.corrcoef(np.argsort(np.argsort(g)), np.argsort(np.argsort(w)))[0, 1]
                for g, w in zip(got_q @ got_p.T, ref_q @ ref_p.T, strict=True)]
    assert np.mean(spearman) > 0.95 and min(spearman) > 0.85
    top10 = [len(set(np.argsort(-g)[:10]) & set(np.argsort(-w)[:10])) / 10
             for g, w in zip(got_q @ got_p.T, ref_q @ ref_p.T, strict=True)]
    assert np.mean(top10) > 0.8


def test_encode_benchmark_times_int8_at_another_outlier_ratio_and_restores_the_models_own():
    from benchmarks.encode import configure, kind, with_ratios

    assert with_ratios(["float32", "int8", "ingest-int8"], [3.0, 2.5]) == [
        "float32", "int8", "ingest-int8", "int8@3", "ingest-int8@3", "int8@2.5", "ingest-int8@2.5"]
    assert with_ratios(["float32"], [3.0]) == ["float32"]  # no int8 variant, nothing to vary
    assert kind("ingest-int8@2.5") == "ingest-int8"
    model = tiny_model()
    own = model.int8_outlier_ratio
    configure(model, "int8@3")
    assert model.int8 and model.int8_outlier_ratio == 3.0 and model.latent_attention_model.fold_latents
    configure(model, "int8@1.01")  # about half the rows over 1.01 x the median row's: those in float
    low = model.encode_passages(PASSAGES, batch_size=4)
    configure(model, "int8@1000")  # no row is an outlier: every row in int8
    high = model.encode_passages(PASSAGES, batch_size=4)
    assert not np.allclose(low, high)  # the ratio reached the kernels
    configure(model, "int8")
    assert model.int8_outlier_ratio == own
    configure(model, "float32")
    assert not model.int8 and not model.latent_attention_model.fold_latents
