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


def test_one_model_serves_gradcam_and_plain_passes_from_many_threads():
    """The app's situation: Grad-CAM requests and plain predictions at the same time on one
    network. Each thread's heatmaps and logits equal its serial result."""
    import threading
    torch.manual_seed(0)
    model = create_model("mernet_cbam").eval()
    xs = [torch.randn(2, 3, 96, 96) for _ in range(3)]
    with GradCAM(model) as cam:
        ref_cam = [cam(x) for x in xs[:2]]
    with torch.inference_mode():
        ref_plain = model(xs[2])
    errors, start = [], threading.Barrier(4)

    def cam_worker(k):
        start.wait()
        for _ in range(25):
            with GradCAM(model) as cam:
                hm, logits = cam(xs[k])
            if not (np.allclose(hm, ref_cam[k][0], atol=1e-5) and torch.allclose(logits, ref_cam[k][1], atol=1e-5)):
                errors.append(f"thread {k}: heatmap differs from its serial result")

    def plain_worker():
        start.wait()
        for _ in range(60):
            with torch.inference_mode():
                if not torch.allclose(model(xs[2]), ref_plain, atol=1e-5):
                    errors.append("plain pass differs")

    def guard(fn, *a):
        try:
            fn(*a)
        except Exception as e:  # an exception in a thread must fail the test, not vanish
            errors.append(f"{type(e).__name__}: {e}")
    threads = [threading.Thread(target=guard, args=(cam_worker, k)) for k in range(2)]
    threads += [threading.Thread(target=guard, args=(plain_worker,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_refuses_a_call_from_another_thread():
    import threading
    model = create_model("mernet_cbam").eval()
    got = []
    with GradCAM(model) as cam:
        t = threading.Thread(target=lambda: got.append(pytest.raises(RuntimeError, cam, torch.randn(1, 3, 96, 96))))
        t.start()
        t.join()
    assert got and "thread" in str(got[0].value)
