import json

import pytest
import torch

import mer
from mer.models import CBAM, create_model, list_models


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_seed_parameter_counts_match_the_original_readme():
    assert n_params(create_model("seed_cbam")) == 8_411_688
    assert n_params(create_model("seed_cnn")) == 8_411_606


def test_seed_models_return_logits_not_probabilities():
    torch.manual_seed(0)
    for name in ("seed_cbam", "seed_cnn"):
        m = create_model(name).eval()
        with torch.no_grad():
            out = m(torch.randn(4, 3, 256, 256) * 3)
        assert out.shape == (4, 6)
        # softmax output would be in [0,1] and sum to 1; logits do neither in general
        assert not torch.allclose(out.sum(1), torch.ones(4), atol=1e-3)
        assert (out < 0).any() or (out > 1).any()
        assert not any(isinstance(mod, torch.nn.Softmax) for mod in m.modules())


def test_cbam_is_not_the_identity_and_its_maps_are_strictly_inside_0_1():
    torch.manual_seed(0)
    block = CBAM(16, reduction=8, spatial_kernel=3)
    x = torch.randn(2, 16, 32, 32)
    y = block(x)
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    for amap in (block.last_channel_map, block.last_spatial_map):
        assert amap.min() > 0 and amap.max() < 1
    assert block.last_channel_map.shape == (2, 16, 1, 1)
    assert block.last_spatial_map.shape == (2, 1, 32, 32)


def test_cbam_parameters_receive_gradients():
    torch.manual_seed(0)
    block = CBAM(16, reduction=8, spatial_kernel=3)
    block(torch.randn(2, 16, 8, 8)).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cbam_inside_seed_cbam_changes_the_output():
    torch.manual_seed(0)
    m = create_model("seed_cbam").eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        with_cbam = m(x)
        m.features[6] = torch.nn.Identity()
        without = m(x)
    assert not torch.allclose(with_cbam, without)


@pytest.mark.parametrize("size,in_chans", [(64, 3), (112, 1), (128, 3), (96, 3), (200, 2)])
def test_default_model_accepts_any_size_from_64_and_any_channels(size, in_chans):
    m = create_model("mernet_cbam", num_classes=5, in_chans=in_chans).eval()
    with torch.no_grad():
        assert m(torch.randn(2, in_chans, size, size + 8)).shape == (2, 5)
    assert 100_000 < n_params(m) < 1_000_000


def test_default_model_rejects_inputs_below_64():
    m = create_model("mernet_cbam").eval()
    with pytest.raises(ValueError, match="at least 64"):
        m(torch.randn(1, 3, 48, 48))


def test_registry_lists_models_and_names_unknown_ones():
    assert {"seed_cbam", "seed_cnn", "mernet_cbam", "mernet"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        create_model("nope")
    m = create_model("mernet_cbam")
    assert m.default_cfg["architecture"] == "mernet_cbam"
    m.get_submodule(m.default_cfg["gradcam_layer"])  # the config names a real layer


def test_class_lists_agree_with_the_shipped_models_and_the_label_sets(default_checkpoint, micro_checkpoint):
    """mer.CLASSES / FER2013_CLASSES name the outputs of the shipped weights: checked against the
    cards of those weights and training's label table, not against themselves."""
    from training.datasets.labels import LABEL_SETS
    micro = json.loads(micro_checkpoint.with_suffix(".json").read_text())
    macro = json.loads(default_checkpoint.with_suffix(".json").read_text())
    assert tuple(micro["classes"]) == mer.CLASSES == tuple(LABEL_SETS["seed6"])
    assert tuple(macro["classes"]) == mer.FER2013_CLASSES
    m = create_model("mernet_cbam", num_classes=len(micro["classes"]), **micro["arch_kwargs"])
    assert m.head[-1].out_features == len(mer.CLASSES)


def test_mini_xception_has_the_keras_models_layers_and_values():
    """46-layer Keras model: Conv2D x7, SeparableConv2D x8, BatchNormalization x14, 58,423 stored values."""
    from mer.models.xception import SeparableConv2d
    m = create_model("mini_xception", num_classes=7, in_chans=1)
    sd = m.state_dict()
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 58_423
    seps = [x for x in m.modules() if isinstance(x, SeparableConv2d)]
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert len(seps) == 8 and len(convs) - 2 * len(seps) == 7 and len(bns) == 14
    assert all(b.eps == 1e-3 for b in bns)
    m.get_submodule(m.default_cfg["gradcam_layer"])
    for size in (64, 48, 97):
        assert m.eval()(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_keras_same_max_pooling_pads_the_odd_pixel_at_the_end():
    """TensorFlow 'same' pooling (k=3, s=2): ceil(n/2) outputs; for n=15 one -inf pixel on each
    side, for n=8 one at the end only. PyTorch's symmetric padding would shift every window."""
    from mer.models.xception import MaxPoolSame
    pool = MaxPoolSame()
    x = torch.arange(15.0).flip(0).view(1, 1, 1, 15).expand(1, 1, 3, 15).contiguous()  # 14, 13, ..., 0
    y = pool(x)[0, 0, 0]
    assert y.tolist() == [14, 13, 11, 9, 7, 5, 3, 1]  # windows [-1..1], [1..3], ..., [13..15]
    x8 = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 3, 8).contiguous()
    assert pool(x8)[0, 0, 0].tolist() == [2, 4, 6, 7]   # windows [0..2], ..., [6..8]


def test_mini_xception_cbam_takes_the_fer2013_backbone_and_its_cbam_acts(default_checkpoint):
    from safetensors.torch import load_file
    torch.manual_seed(0)
    m = create_model("mini_xception_cbam", num_classes=7, in_chans=1).eval()
    res = m.load_state_dict(load_file(str(default_checkpoint)), strict=False)
    assert not res.unexpected_keys and res.missing_keys
    assert all(".cbam." in k for k in res.missing_keys)
    assert sum(isinstance(x, CBAM) for x in m.modules()) == 4
    plain = create_model("mini_xception", num_classes=7, in_chans=1).eval()
    plain.load_state_dict(load_file(str(default_checkpoint)))
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(m(x), plain(x), atol=1e-3)
        for b in m.blocks:
            b.cbam = torch.nn.Identity()
        assert torch.allclose(m(x), plain(x), atol=1e-5)  # without CBAM it is exactly the backbone
