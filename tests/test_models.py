"""The GP networks: paper parameter counts, forward API, GP head, initialisation, sinc resampling, registry errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import resample
from torch import nn

from gpedge.models import GPOutput, create_model, list_models
from gpedge.models.init import fan_in
from gpedge.models.sinc import SincUpsample, sinc_matrix
from gpedge.preprocess import normalise_slice_max
from conftest import make_slices

ARCH_VARIANTS = [
    ("gp-unet", {"upsample": "sinc"}),
    ("gp-unet", {"upsample": "transpose"}),
    ("gp-unet", {"upsample": "sinc-mirror"}),
    ("gp-unet", {"norm": "batch"}),
    ("gp-shuffle-unet", {}),
    ("gp-shuffle-unet", {"norm": "batch"}),
    ("gp-reconresnet", {"upsample": "sinc"}),
    ("gp-reconresnet", {"upsample": "transpose"}),
]


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("gp-unet", {}, 1_740_675),
        ("gp-unet", {"upsample": "transpose"}, 1_863_555),
        ("gp-shuffle-unet", {}, 26_371_587),
        ("gp-reconresnet", {}, 17_272_918),
    ],
)
def test_paper_configurations_have_the_published_parameter_counts(name, options, expected):
    model = create_model(name, in_channels=4, num_classes=3, **options)
    assert _num_params(model) == expected


def test_registry_lists_the_three_networks():
    assert list_models() == ["gp-unet", "gp-shuffle-unet", "gp-reconresnet"]


@pytest.mark.parametrize(("name", "options"), ARCH_VARIANTS)
@pytest.mark.parametrize("train", [True, False])
def test_forward_returns_logits_and_heatmaps_in_both_modes(name, options, train):
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=4, width=4, **options)
    model.train(train)
    x = torch.rand(2, 3, 32, 48)
    out = model(x)
    assert isinstance(out, GPOutput)
    assert out.logits.shape == (2, 4) and out.logits.dtype == torch.float32
    assert out.heatmaps.shape == (2, 4, 32, 48) and out.heatmaps.dtype == torch.float32
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.heatmaps).all()
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(0)
    model = create_model("gp-unet", width=4)
    x = torch.rand(1, 4, 32, 32)
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)
    model.train()
    assert not torch.equal(model(x).heatmaps, model(x).heatmaps)


@pytest.mark.parametrize(("name", "multiple"), [("gp-unet", 4), ("gp-shuffle-unet", 8), ("gp-reconresnet", 4)])
def test_input_size_must_be_a_multiple(name, multiple):
    model = create_model(name, width=4).eval()
    assert model.input_multiple == multiple
    with pytest.raises(ValueError, match=f"divisible by {multiple}"):
        model(torch.rand(1, 4, 8 * multiple + 2, 8 * multiple))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        model(torch.rand(1, 3, 32, 32))


def test_unet_input_multiple_follows_depth():
    assert create_model("gp-unet", width=4, depth=4).input_multiple == 8
    assert create_model("gp-shuffle-unet", width=4, levels=2).input_multiple == 4


@pytest.mark.parametrize("name", ["gp-unet", "gp-shuffle-unet", "gp-reconresnet"])
def test_head_logits_are_the_conv_of_the_spatially_max_pooled_features(name):
    torch.manual_seed(1)
    model = create_model(name, width=4).eval()
    x = torch.rand(2, 4, 32, 32)
    features = model.body(x)
    out = model.head(features)
    weight = model.head.classifier.weight[:, :, 0, 0]
    bias = model.head.classifier.bias
    expected_logits = features.amax(dim=(2, 3)) @ weight.T + bias
    expected_maps = torch.einsum("kc,nchw->nkhw", weight, features) + bias[None, :, None, None]
    torch.testing.assert_close(out.logits, expected_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.heatmaps, expected_maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x).logits, out.logits)
    assert not torch.allclose(out.logits, out.heatmaps.amax(dim=(2, 3)), atol=1e-4)


def test_config_records_resolved_options_and_rebuilds_the_same_architecture():
    model = create_model("gp-reconresnet", in_channels=2, num_classes=5, width=8, num_res_blocks=2)
    assert model.config == {
        "arch": "gp-reconresnet",
        "in_channels": 2,
        "num_classes": 5,
        "options": {"width": 8, "num_res_blocks": 2, "upsample": "sinc", "dropout": 0.5},
    }
    config = model.config
    rebuilt = create_model(config["arch"], config["in_channels"], config["num_classes"], **config["options"])
    rebuilt.load_state_dict(model.state_dict())
    assert list(rebuilt.state_dict()) == list(model.state_dict())


def test_unet_batch_norm_sits_between_each_3x3_convolution_and_its_relu():
    model = create_model("gp-unet", width=4, depth=2, norm="batch")
    convs = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 3 and isinstance(m[0], nn.Conv2d)]
    assert len(convs) == 6
    for conv, norm, relu in convs:
        assert conv.kernel_size == (3, 3) and conv.bias is None
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == conv.out_channels and isinstance(relu, nn.ReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    plain = create_model("gp-unet", width=4, depth=2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert plain.config["options"]["norm"] == "none"


def test_shuffle_unet_batch_norm_joins_the_downsampling_blocks_batch_norm():
    """``norm="batch"``: every 3x3 convolution followed by a ReLU gets a BatchNorm (bias-free); the
    downsampling blocks keep the paper's biased conv -> BatchNorm; the linear upsampling conv has none."""
    def conv_norm_relu(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Module]]:
        blocks = [m for m in model.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)]
        return [(m[0], m[1]) for m in blocks if isinstance(m[-1], nn.ReLU)]

    plain, batch = create_model("gp-shuffle-unet", width=4, levels=2), create_model("gp-shuffle-unet", width=4, levels=2, norm="batch")
    assert plain.config["options"]["norm"] == "none"
    plain_norms = [isinstance(norm, nn.BatchNorm2d) for _, norm in conv_norm_relu(plain)]
    assert sum(plain_norms) == 4 and len(plain_norms) == 2 + 2 * 9 + 2 * 6
    assert all(isinstance(norm, nn.BatchNorm2d) for _, norm in conv_norm_relu(batch))
    assert len(conv_norm_relu(batch)) == len(plain_norms)
    assert sum(conv.bias is not None for conv, _ in conv_norm_relu(batch)) == 4
    assert all(not isinstance(m[1], nn.BatchNorm2d) for m in batch.modules()
               if isinstance(m, nn.Sequential) and isinstance(m[-1], nn.PixelShuffle))


def test_sinc_constants_are_not_in_the_state_dict():
    model = create_model("gp-unet", width=4)
    model(torch.rand(1, 4, 16, 16))
    sinc = [m for m in model.modules() if isinstance(m, SincUpsample)]
    assert len(sinc) == 2 and all(not m.state_dict() for m in sinc)
    assert sum(v.numel() for v in model.state_dict().values()) == _num_params(model)


def test_reconresnet_layers_follow_the_paper():
    model = create_model("gp-reconresnet", width=4, num_res_blocks=2)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    prelus = [m for m in model.modules() if isinstance(m, nn.PReLU)]
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(dropouts) == 2 and all(m.p == 0.5 for m in dropouts)
    assert prelus and all(m.weight.numel() == 1 and m.weight.item() == pytest.approx(0.25) for m in prelus)
    assert norms and not any(m.affine for m in norms)
    assert any(isinstance(m, nn.ReflectionPad2d) for m in model.modules())


def test_shuffle_unet_convs_have_zero_bias_and_kaiming_weights():
    torch.manual_seed(0)
    model = create_model("gp-shuffle-unet", width=16, levels=2)
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs)
    big = model.body.encoder[1].branches[0][0]
    assert big.weight.std().item() == pytest.approx(np.sqrt(2.0 / big.weight[0].numel()), rel=0.1)


@pytest.mark.parametrize(("name", "options"), ARCH_VARIANTS)
def test_first_loss_is_near_chance(name, options):
    """The head sees spatial maxima: He-scaled (the paper's GP-ShuffleUNet init), it starts at a mean
    loss of 8.2 with most head gradients clipped; the default-scaled head starts below 2.1 (ln 3 = 1.10)."""
    slices = make_slices(12, seed=3, channels=4)
    images, labels = torch.from_numpy(normalise_slice_max(slices.images)), torch.from_numpy(slices.labels)
    losses = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = create_model(name, width=8, **options).train()
        with torch.no_grad():
            losses.append(nn.functional.cross_entropy(model(images).logits, labels).item())
    assert np.mean(losses) < 2.5, losses


@pytest.mark.parametrize(("name", "options"), ARCH_VARIANTS)
def test_initialisation_keeps_every_layer_alive_and_learning(name, options):
    """No ReLU channel is off on a whole batch of brain slices, and the gradient reaching the deepest
    layer is within two orders of magnitude of the largest one (PyTorch's default initialisation:
    25-40% dead channels from the second level on and a 500x spread, docs/quality.md). The spread is
    taken over the convolutions whose output scale the initialisation sets: a BatchNorm after a
    convolution makes its output independent of the weights' scale, and its weight gradient scales
    with one over the spread of its input (GP-ShuffleUNet with BatchNorm: 3.0 on the stem, which sees
    the raw slice, against 0.014-0.05 elsewhere)."""
    torch.manual_seed(0)
    model = create_model(name, width=8, **{"num_res_blocks": 4, **options} if name == "gp-reconresnet" else options)
    model.train()
    slices = make_slices(12, seed=3, channels=4)
    images = torch.from_numpy(normalise_slice_max(slices.images))
    dead: dict[str, float] = {}

    def record(module_name):
        def hook(module, inputs, output):
            channels = output.detach().transpose(0, 1).flatten(1)
            dead[module_name] = (channels.amax(dim=1) <= 0).float().mean().item()
        return hook

    for module_name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(record(module_name))
    loss = nn.functional.cross_entropy(model(images).logits, torch.from_numpy(slices.labels))
    loss.backward()
    assert max(dead.values(), default=0.0) < 0.1, dead
    normalised = {id(block[i]) for block in model.modules() if isinstance(block, nn.Sequential)
                  for i in range(len(block) - 1) if isinstance(block[i + 1], nn.BatchNorm2d)}
    convs = [m for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and n.startswith("body") and id(m) not in normalised]
    gradients = np.array([m.weight.grad.pow(2).mean().sqrt().item() for m in convs])
    assert len(convs) >= 2 and gradients.min() > 1e-2 * gradients.max(), gradients


def test_convolutions_are_he_initialised_for_what_follows_them():
    torch.manual_seed(0)
    unet = create_model("gp-unet", width=16, upsample="transpose")
    relu_conv = unet.body.down[1][0][0]
    transpose = unet.body.up[0].up
    assert relu_conv.weight.std().item() == pytest.approx(np.sqrt(2.0 / fan_in(relu_conv)), rel=0.1)
    assert fan_in(transpose) == transpose.in_channels
    assert transpose.weight.std().item() == pytest.approx(np.sqrt(1.0 / transpose.in_channels), rel=0.1)
    sinc_conv = create_model("gp-unet", width=16).body.up[0].up[1]
    assert sinc_conv.weight.std().item() == pytest.approx(np.sqrt(1.0 / sinc_conv.in_channels), rel=0.1)
    assert all(torch.count_nonzero(m.bias) == 0 for m in unet.body.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: create_model("gp-vnet"), "valid models: gp-unet, gp-shuffle-unet, gp-reconresnet"),
        (lambda: create_model("gp-unet", levels=3), "valid options: width, depth, upsample, dropout"),
        (lambda: create_model("gp-shuffle-unet", upsample="sinc"), "valid options: width, levels, dropout"),
        (lambda: create_model("gp-unet", upsample="bilinear"), "upsample must be one of sinc, sinc-mirror, transpose"),
        (lambda: create_model("gp-unet", norm="group"), "norm must be one of none, batch"),
        (lambda: create_model("gp-reconresnet", dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
        (lambda: create_model("gp-unet", width=0), "width must be an integer >= 1"),
        (lambda: create_model("gp-unet", num_classes=1), "num_classes must be an integer >= 2"),
    ],
)
def test_bad_names_and_options_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 14), (8, 16), (15, 30), (16, 32), (6, 9), (9, 20), (16, 10), (15, 8)])
def test_sinc_matrix_matches_scipy_resample(n_in, n_out):
    rng = np.random.default_rng(n_in * 100 + n_out)
    x = rng.standard_normal((n_in, 3))
    matrix = sinc_matrix(n_in, n_out)
    assert matrix.shape == (n_out, n_in)
    np.testing.assert_allclose(matrix @ x, resample(x, n_out, axis=0), atol=1e-5)


@pytest.mark.parametrize("n_in", [5, 8, 30, 31])
def test_sinc_doubling_keeps_the_input_samples(n_in):
    x = np.random.default_rng(n_in).standard_normal(n_in)
    np.testing.assert_allclose((sinc_matrix(n_in, 2 * n_in) @ x)[::2], x, atol=1e-12)


@pytest.mark.parametrize("n_in", [5, 8, 30, 31])
def test_mirror_sinc_keeps_the_samples_without_wrapping_the_borders(n_in):
    """The mirror form keeps every input sample, reproduces a ramp (which the periodic form turns into a
    jump), and puts almost nothing of the first row into the last."""
    mirror, periodic = sinc_matrix(n_in, 2 * n_in, mirror=True), sinc_matrix(n_in, 2 * n_in)
    x = np.random.default_rng(n_in).standard_normal(n_in)
    np.testing.assert_allclose((mirror @ x)[::2], x, atol=1e-12)
    np.testing.assert_allclose(mirror.sum(axis=1), 1.0, atol=1e-12)
    ramp = np.arange(n_in, dtype=np.float64)
    inside = np.arange(2 * n_in - 1) / 2.0
    assert np.abs(mirror[:-1] @ ramp - inside).max() < 0.1  # a tenth of one input step
    assert np.abs(periodic[:-1] @ ramp - inside).max() > 0.5
    assert abs(mirror[-1, 0]) < 0.05 < abs(periodic[-1, 0])


def _fft_upsample_2d(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Reference FFT form: rfft, copy low frequencies, halve the Nyquist bin, irfft, rescale; along H then W."""
    for dim in (-2, -1):
        n_in = x.shape[dim]
        n_out = n_in * scale
        spectrum = torch.fft.rfft(x, dim=dim)
        shape = list(spectrum.shape)
        shape[dim] = n_out // 2 + 1
        longer = torch.zeros(shape, dtype=spectrum.dtype)
        longer.narrow(dim, 0, spectrum.shape[dim]).copy_(spectrum)
        if n_in % 2 == 0:
            longer.narrow(dim, n_in // 2, 1).mul_(0.5)
        x = torch.fft.irfft(longer, n=n_out, dim=dim) * scale
    return x


@pytest.mark.parametrize(("height", "width"), [(8, 12), (7, 10), (15, 15)])
def test_sinc_module_matches_the_fft_form(height, width):
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    up = SincUpsample(2)
    torch.testing.assert_close(up(x), _fft_upsample_2d(x, 2), rtol=0, atol=1e-10)
    y = up(x.float())
    assert y.dtype == torch.float32 and y.shape == (2, 3, 2 * height, 2 * width)
    torch.testing.assert_close(y, _fft_upsample_2d(x, 2).float(), rtol=1e-5, atol=1e-5)
