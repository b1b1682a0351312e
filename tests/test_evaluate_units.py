"""Mask-rule sweep scoring on constructed masks, Grad-CAM / Grad-CAM++ on hand-checkable and tiny GP networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gpedge.errors import GpedgeError
from gpedge.evaluate.posthoc import explain
from gpedge.evaluate.sweep import DEFAULT_SWEEP, RuleSweep, candidates, parse_offsets, parse_rules
from gpedge.models import GPNetwork, create_model


def _core_and_ring() -> tuple[np.ndarray, np.ndarray]:
    """A core mask (8 x 8) and the same core with a ring around it (16 x 16), on 32 x 32."""
    core = np.zeros((32, 32), np.uint8)
    core[12:20, 12:20] = 1
    ring = np.zeros((32, 32), np.uint8)
    ring[8:24, 8:24] = 1
    return core, ring


def _sweep(offsets, rule: str = "paper") -> RuleSweep:
    return RuleSweep([(rule, o) for o in offsets])


def test_sweep_picks_the_offset_whose_masks_match_the_ground_truth():
    core, core_and_ring = _core_and_ring()
    # the masks a predictor returned: offset 0 keeps the core, offset 1 core and ring
    wide = _sweep([0.0, 1.0])
    wide.add("paper", 0.0, core, core_and_ring, healthy=False)
    wide.add("paper", 1.0, core_and_ring, core_and_ring, healthy=False)
    assert wide.best() == ("paper", 1.0)
    narrow = _sweep([0.0, 1.0])
    narrow.add("paper", 0.0, core, core, healthy=False)
    narrow.add("paper", 1.0, core_and_ring, core, healthy=False)
    assert narrow.best_offset() == 0.0
    rows = {r["offset"]: r for r in narrow.table()}
    assert rows[0.0]["dice_median"] == 1.0
    assert rows[1.0]["dice_median"] == pytest.approx((2 * 64 + 1) / (64 + 256 + 1))


def test_sweep_tie_goes_to_fewer_false_positives_then_smaller_offset():
    _, core_and_ring = _core_and_ring()
    sweep = _sweep([0.9, 1.0])
    for offset in (0.9, 1.0):
        sweep.add("paper", offset, core_and_ring, core_and_ring, healthy=False)
    assert sweep.best_offset() == 0.9
    speck = np.zeros((32, 32), np.uint8)
    speck[0:2, 0:2] = 1
    empty = np.zeros((32, 32), np.uint8)
    sweep.add("paper", 0.9, speck, empty, healthy=True)
    sweep.add("paper", 0.9, empty, empty, healthy=True)
    sweep.add("paper", 1.0, speck, empty, healthy=True)
    sweep.add("paper", 1.0, speck, empty, healthy=True)
    rows = sweep.table()
    assert [r["healthy_slices"] for r in rows] == [2, 2]
    assert [r["healthy_fp_rate"] for r in rows] == [0.5, 1.0]
    assert sweep.best_offset() == 0.9


def test_sweep_over_rules_picks_the_best_pair_and_reports_each_rule():
    core, core_and_ring = _core_and_ring()
    sweep = RuleSweep([("paper", 0.0), ("paper", 1.0), ("relative", 0.0), ("relative", 0.5)])
    masks = {("paper", 0.0): core, ("paper", 1.0): np.ones_like(core), ("relative", 0.0): core, ("relative", 0.5): core_and_ring}
    for (rule, offset), mask in masks.items():
        sweep.add(rule, offset, mask, core_and_ring, healthy=False)
        sweep.add(rule, offset, mask if rule == "paper" else np.zeros_like(core), np.zeros_like(core), healthy=True)
    assert sweep.best() == ("relative", 0.5)
    per_rule = sweep.per_rule()
    assert list(per_rule) == ["paper", "relative"]
    assert per_rule["paper"]["offset"] == 0.0 and per_rule["paper"]["healthy_fp_rate"] == 1.0  # 129/321 > 513/1281
    assert per_rule["relative"] == {"offset": 0.5, "dice_median": 1.0, "dice_median_called": 1.0, "iou_median": 1.0, "healthy_fp_rate": 0.0}
    assert {r["rule"] for r in sweep.table()} == {"paper", "relative"}


def test_sweep_ranks_on_the_slices_called_tumour():
    """Two of three tumour slices are called healthy (empty masks under every rule): the median over all
    tumour slices is 0 for both offsets, the slice called tumour decides."""
    core, core_and_ring = _core_and_ring()
    empty = np.zeros_like(core)
    sweep = _sweep([0.0, 1.0])
    for offset, mask in ((0.0, core), (1.0, core_and_ring)):
        sweep.add("paper", offset, mask, core_and_ring, healthy=False, called_tumour=True)
        for _ in range(2):
            sweep.add("paper", offset, empty, core_and_ring, healthy=False, called_tumour=False)
    rows = {r["offset"]: r for r in sweep.table()}
    assert rows[0.0]["dice_median"] == rows[1.0]["dice_median"] < 0.01
    assert rows[1.0]["dice_median_called"] == 1.0 and rows[1.0]["called_tumour_slices"] == 1
    assert sweep.best() == ("paper", 1.0)


def test_sweep_without_tumour_slices_is_a_clear_error():
    sweep = _sweep([0.5])
    sweep.add("paper", 0.5, np.ones((4, 4)), np.zeros((4, 4)), healthy=True)
    with pytest.raises(GpedgeError, match="no slice with a ground-truth tumour mask"):
        sweep.best_offset()


def test_parse_offsets():
    assert parse_offsets("1,0.5, 0,0.5") == [0.0, 0.5, 1.0]
    assert parse_offsets("-0.25,0") == [-0.25, 0.0]
    for bad in ("a,b", "", "nan", "0,inf"):
        with pytest.raises(GpedgeError, match="--offsets"):
            parse_offsets(bad)


def test_parse_rules_and_candidates():
    assert parse_rules("paper, relative+clean,paper,head+peak") == ["paper", "relative+clean", "head+peak"]
    for bad in ("", "paper,otsu", "relative+cleaned", "head+clean+peak", "+peak"):
        with pytest.raises(GpedgeError, match="mask rule|--mask-rules"):
            parse_rules(bad)
    pairs = candidates(["paper", "contrast"], None)
    assert pairs == [("paper", o) for o in DEFAULT_SWEEP["absolute"]] + [("contrast", o) for o in DEFAULT_SWEEP["relative"]]
    assert candidates(["paper", "head"], [0.0, 0.5]) == [("paper", 0.0), ("paper", 0.5), ("head", 0.0), ("head", 0.5)]
    with pytest.raises(GpedgeError, match=r"fraction in \[-1, 1\]"):
        candidates(["relative"], [0.0, 2.0])
    assert candidates(["paper"], [2.0]) == [("paper", 2.0)]  # the paper's offset is absolute: any finite value


def _identity_gp(weight: np.ndarray, bias: np.ndarray) -> GPNetwork:
    """A GP network whose feature map is its input: every gradient can be written down by hand."""
    classes, channels = weight.shape
    model = GPNetwork("identity", channels, classes, {}, nn.Identity(), channels)
    with torch.no_grad():
        model.head.classifier.weight.copy_(torch.tensor(weight, dtype=torch.float32)[:, :, None, None])
        model.head.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return model.eval()


def test_grad_cam_and_grad_cam_pp_hand_checked():
    rng = np.random.default_rng(0)
    features = rng.uniform(0.0, 1.0, (1, 3, 6, 5)).astype(np.float32)  # unique maxima per channel
    weight = np.array([[0.5, -1.0, 2.0], [1.0, 0.2, -0.3]])
    bias = np.array([0.1, -0.2])
    out = explain(_identity_gp(weight, bias), torch.tensor(features))
    peaks = features[0].max(axis=(1, 2))
    logits = bias + weight @ peaks
    c = int(np.argmax(logits))
    assert out.predicted.tolist() == [c]
    f = features[0].astype(np.float64)
    # logit_c = b_c + sum_k W_ck max(F_k): dlogit/dF_k is W_ck at F_k's peak and 0 elsewhere
    np.testing.assert_allclose(out.inherent[0], bias[c] + np.tensordot(weight[c], f, 1), rtol=1e-5)
    hw = f.shape[1] * f.shape[2]
    grad_cam = np.maximum(np.tensordot(weight[c] / hw, f, 1), 0)
    np.testing.assert_allclose(out.posthoc["grad_cam"][0], grad_cam, rtol=1e-5, atol=1e-7)
    sums = f.sum(axis=(1, 2))
    w = weight[c]
    alpha = w**2 / (2 * w**2 + sums * w**3)
    grad_cam_pp = np.maximum(np.tensordot(alpha * np.maximum(w, 0), f, 1), 0)
    np.testing.assert_allclose(out.posthoc["grad_cam_pp"][0], grad_cam_pp, rtol=1e-5, atol=1e-7)


def test_posthoc_maps_on_a_tiny_gp_unet():
    torch.manual_seed(0)
    model = create_model("gp-unet", in_channels=2, num_classes=3, width=4, depth=2).eval()
    images = torch.rand(3, 2, 16, 16)
    out = explain(model, images)
    assert out.inherent.shape == (3, 16, 16)
    with torch.no_grad():
        logits, heatmaps = model(images)
    np.testing.assert_array_equal(out.predicted, logits.argmax(1).numpy())
    np.testing.assert_allclose(out.inherent, heatmaps[np.arange(3), out.predicted].numpy(), rtol=1e-5, atol=1e-6)
    for name in ("grad_cam", "grad_cam_pp"):
        cam = out.posthoc[name]
        assert cam.shape == (3, 16, 16) and cam.dtype == np.float32
        assert np.isfinite(cam).all() and (cam >= 0).all()
    assert not any(p.grad is not None for p in model.parameters())


def test_unknown_posthoc_method():
    model = create_model("gp-unet", in_channels=1, num_classes=2, width=2, depth=1).eval()
    with pytest.raises(ValueError, match="unknown post-hoc"):
        explain(model, torch.rand(1, 1, 8, 8), methods=("lime",))
