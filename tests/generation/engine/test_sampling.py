"""Sampling semantics: CFG ramp, top-k then top-p, and both random-stream modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from generation.engine.errors import EngineInputError
from generation.engine.sampling import (
    SamplingSettings,
    filter_top_k_top_p,
    guided_logits,
    sample_tokens,
)
from generation.engine.transformer import NextScaleTransformer
from generation.engine.vqvae import VQVAE

TOL = {"rtol": 1e-4, "atol": 1e-4}
GREEDY = {"cfg": 4.0, "top_k": 1, "top_p": 0.0}
STOCHASTIC = {"cfg": 4.0, "top_k": 100, "top_p": 0.95}


def _sample(
    transformer: NextScaleTransformer, vqvae: VQVAE, cond: torch.Tensor, settings: SamplingSettings
) -> tuple[list[torch.Tensor], torch.Tensor]:
    out = sample_tokens(transformer, vqvae.quantize, cond, [0, 0], settings)
    with torch.no_grad():
        img = (vqvae.decode_features(out.fhat_BChw) + 1) / 2
    return out.indices, img


@pytest.mark.parametrize("rng", ["reference", "per_image"])
def test_greedy_sampling_matches_reference_indices_and_images(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, sample_io: dict, rng: str
) -> None:
    settings = SamplingSettings(**GREEDY, rng=rng)  # type: ignore[arg-type]
    indices, img = _sample(ref_transformer, ref_vqvae, sample_io["cond_BD"], settings)
    for si, idx in enumerate(indices):
        assert torch.equal(idx, sample_io[f"greedy_idx_s{si}"]), f"scale {si}"
    assert_close(img, sample_io["greedy_img_B3HW"], **TOL)


def test_stochastic_sampling_in_reference_rng_mode_matches_reference(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, sample_io: dict
) -> None:
    settings = SamplingSettings(**STOCHASTIC, rng="reference")
    indices, img = _sample(ref_transformer, ref_vqvae, sample_io["cond_BD"], settings)
    for si, idx in enumerate(indices):
        assert torch.equal(idx, sample_io[f"stoch_idx_s{si}"]), f"scale {si}"
    assert_close(img, sample_io["stoch_img_B3HW"], **TOL)


def test_stochastic_reference_indices_lie_in_the_top_k_top_p_candidates(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, sample_io: dict
) -> None:
    # RNG-free: recompute the guided logits with the full-sequence forward on the sampled tokens.
    indices = [sample_io[f"stoch_idx_s{si}"] for si in range(10)]
    cond = sample_io["cond_BD"]
    x = ref_vqvae.indices_to_teacher_input(indices)
    with torch.no_grad():
        both = torch.cat(
            (ref_transformer(cond, x), ref_transformer(cond, x, torch.ones(2, dtype=torch.bool)))
        )
    for si, (b, e) in enumerate(ref_transformer.begin_ends):
        guided = guided_logits(both[:, b:e], si, 10, STOCHASTIC["cfg"])
        kept = filter_top_k_top_p(guided, STOCHASTIC["top_k"], STOCHASTIC["top_p"])
        chosen = kept.gather(-1, indices[si][..., None])
        assert torch.isfinite(chosen).all(), f"scale {si} sampled outside the candidates"


def test_filters_do_not_modify_their_input_and_keep_the_maximum() -> None:
    logits = torch.randn(2, 5, 50)
    before = logits.clone()
    out = filter_top_k_top_p(logits, top_k=10, top_p=0.5)
    assert torch.equal(logits, before)
    assert torch.isfinite(out).sum(-1).max() <= 10
    assert torch.equal(out.argmax(-1), logits.argmax(-1))
    assert torch.equal(filter_top_k_top_p(logits, 0, 0.0), logits)


def _sorted_filter(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """The reference's filter, written out: mask below the k-th value, sort whole rows."""
    kth = logits.topk(top_k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    logits = logits.masked_fill(logits < kth, -math.inf)
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    drop = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
    drop[..., -1] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)


def test_the_nucleus_from_sorted_top_k_candidates_is_the_reference_filter() -> None:
    gen = torch.Generator().manual_seed(3)
    # Rounded logits make equal values common: at the k-th value, across the nucleus' edge
    # and elsewhere; the fast path must give the same result or step aside for sorting.
    for scale in (None, 64.0, 8.0, 2.0):
        logits = torch.randn(3, 40, 256, generator=gen) * 3
        if scale is not None:
            logits = (logits * scale).round() / scale
        for top_k, top_p in ((20, 0.9), (100, 0.95), (255, 0.5), (1, 0.7), (50, 0.999)):
            expected = _sorted_filter(logits, top_k, top_p)
            assert torch.equal(filter_top_k_top_p(logits, top_k, top_p), expected)
    # The rows that step aside: a tie at the k-th value, and one across the nucleus' edge.
    tied_kth = torch.tensor([[[5.0, 4.0, 3.0, 3.0, 1.0, 0.0]]])
    assert torch.equal(filter_top_k_top_p(tied_kth, 3, 0.99), _sorted_filter(tied_kth, 3, 0.99))
    tied_edge = torch.tensor([[[0.0, 2.0, 2.0, 2.0, 9.0, -1.0]]])
    for top_p in (0.2, 0.9, 0.9985, 0.9999):  # 0.9985: the edge falls between the 2s
        expected = _sorted_filter(tied_edge, 5, top_p)
        assert torch.equal(filter_top_k_top_p(tied_edge, 5, top_p), expected)


def test_sorting_is_skipped_when_the_top_k_candidates_order_the_nucleus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sorts = []
    original = torch.Tensor.sort

    def counting(self: torch.Tensor, *args: object, **kwargs: object) -> object:
        sorts.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "sort", counting)
    distinct = torch.randperm(512, generator=torch.Generator().manual_seed(0)).float().view(2, 256)
    filter_top_k_top_p(distinct[None], 100, 0.95)
    assert sorts == []
    filter_top_k_top_p(torch.tensor([[[5.0, 4.0, 3.0, 3.0, 1.0, 0.0]]]), 3, 0.99)  # tie at k
    assert sorts == [(1, 1, 6)]
    # Off the CPU no path is chosen on the host (a meta tensor cannot be read: it would raise).
    sorts.clear()
    on_meta = filter_top_k_top_p(torch.empty(2, 7, 256, device="meta"), 100, 0.95)
    assert on_meta.shape == (2, 7, 256) and sorts == [(2, 7, 256)]


def test_guidance_ramps_from_zero_at_the_first_scale_to_cfg_at_the_last() -> None:
    cond, null = torch.ones(1, 1, 3), torch.zeros(1, 1, 3)
    both = torch.cat((cond, null))
    assert torch.equal(guided_logits(both, 0, 10, 4.0), cond)
    assert torch.equal(guided_logits(both, 9, 10, 4.0), 5 * cond)


def test_per_image_seeds_give_the_same_tokens_alone_or_in_a_mixed_batch(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, var_io: dict
) -> None:
    settings = SamplingSettings(**STOCHASTIC)
    cond = var_io["cond_BD"]
    pair = sample_tokens(ref_transformer, ref_vqvae.quantize, cond, [11, 22], settings).indices
    alone = sample_tokens(ref_transformer, ref_vqvae.quantize, cond[1:], [22], settings).indices
    swapped = sample_tokens(ref_transformer, ref_vqvae.quantize, cond.flip(0), [22, 11], settings)
    for si in range(10):
        assert torch.equal(pair[si][1], alone[si][0])
        assert torch.equal(pair[si][1], swapped.indices[si][0])
        assert torch.equal(pair[si][0], swapped.indices[si][1])


def test_more_smooth_runs_in_both_rng_modes_and_is_deterministic(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, var_io: dict
) -> None:
    for rng in ("per_image", "reference"):
        settings = SamplingSettings(**STOCHASTIC, more_smooth=True, rng=rng)  # type: ignore[arg-type]
        a = sample_tokens(ref_transformer, ref_vqvae.quantize, var_io["cond_BD"], [5, 5], settings)
        b = sample_tokens(ref_transformer, ref_vqvae.quantize, var_io["cond_BD"], [5, 5], settings)
        assert torch.equal(a.fhat_BChw, b.fhat_BChw)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cfg": -1.0}, "cfg"),
        ({"cfg": float("nan")}, "cfg"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.1}, "top_p"),
        ({"rng": "global"}, "rng"),
    ],
)
def test_bad_settings_raise_engine_input_error(kwargs: dict, message: str) -> None:
    with pytest.raises(EngineInputError, match=message):
        SamplingSettings(**kwargs)


def test_mistyped_settings_raise_type_error() -> None:
    with pytest.raises(TypeError, match="top_k"):
        SamplingSettings(top_k=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="more_smooth"):
        SamplingSettings(more_smooth=1)  # type: ignore[arg-type]


def test_settings_round_trip_and_reject_unknown_keys() -> None:
    settings = SamplingSettings(cfg=1.5, top_k=10, top_p=0.9, more_smooth=True)
    assert SamplingSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(EngineInputError, match="temperature"):
        SamplingSettings.from_dict({"temperature": 1.0})


def test_top_k_beyond_the_codebook_and_bad_seeds_are_refused(
    ref_transformer: NextScaleTransformer, ref_vqvae: VQVAE, var_io: dict
) -> None:
    cond, q = var_io["cond_BD"], ref_vqvae.quantize
    with pytest.raises(EngineInputError, match="top_k"):
        sample_tokens(ref_transformer, q, cond, [0, 0], SamplingSettings(top_k=257))
    with pytest.raises(EngineInputError, match="seeds"):
        sample_tokens(ref_transformer, q, cond, [0], SamplingSettings())
    with pytest.raises(EngineInputError, match="outside"):
        sample_tokens(ref_transformer, q, cond, [0, 2**63], SamplingSettings())
    with pytest.raises(EngineInputError, match="outside"):
        sample_tokens(ref_transformer, q, cond, [0, -1], SamplingSettings())
    with pytest.raises(TypeError):
        sample_tokens(ref_transformer, q, cond, [0, True], SamplingSettings())
    with pytest.raises(EngineInputError, match="equal"):
        sample_tokens(ref_transformer, q, cond, [0, 1], SamplingSettings(top_k=9, rng="reference"))
