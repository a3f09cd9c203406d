import numpy as np
import pytest
import torch

from mer.gradcam import GradCAM, overlay
from mer.models import create_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch,size", [("mernet_cbam", 96), ("seed_cbam", 256)])
def test_gradcam_batched_heatmaps(arch, size, device):
    torch.manual_seed(0)
    model = create_model(arch).to(device).eval()
    x = torch.randn(3, 3, size, size, device=device)
    with GradCAM(model) as cam:
        hm, logits = cam(x)
        assert len(model.get_submodule(model.default_cfg["gradcam_layer"])._forward_hooks) == 1
    assert hm.shape == (3, size, size) and hm.dtype == np.float32
    assert hm.min() >= 0 and hm.max() <= 1 and np.allclose(hm.reshape(3, -1).max(1), 1, atol=1e-5)
    assert logits.shape == (3, 6)


def test_hooks_are_removed_and_no_gradient_leaks_into_the_model():
    torch.manual_seed(0)
    model = create_model("mernet_cbam").eval()
    with GradCAM(model) as cam:
        cam(torch.randn(2, 3, 96, 96))
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(RuntimeError, match="with"):
        GradCAM(model)(torch.randn(1, 3, 96, 96))


def test_heatmaps_differ_between_target_classes():
    torch.manual_seed(0)
    model = create_model("mernet_cbam").eval()
    x = torch.randn(1, 3, 96, 96)
    with GradCAM(model, "stages.2") as cam:
        maps = [cam(x, targets=c)[0][0] for c in range(6)]
    diffs = [np.abs(maps[0] - m).mean() for m in maps[1:]]
    assert max(diffs) > 0.01


def test_overlay_blends_at_image_size():
    img = np.full((50, 80, 3), 100, np.uint8)
    hm = np.zeros((10, 10), np.float32)
    hm[5:, 5:] = 1
    out = overlay(img, hm)
    assert out.shape == img.shape and out.dtype == np.uint8 and not (out == img).all()
