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


def test_canonical_classes():
    assert mer.CLASSES == ("Happiness", "Surprise", "Anger", "Fear", "Sadness", "Disgust")
