"""Shared fixtures. Real media lives in ../shared/media (beside the checkout); tests that need it
skip with a clear reason when it is absent. Nothing here mocks the parts under test."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("MER_MEDIA", ROOT.parent / "shared" / "media"))
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def media() -> Path:
    if not (MEDIA / "single_face.jpg").is_file():
        pytest.skip(f"real test media not found at {MEDIA} (set MER_MEDIA or place shared/media beside the checkout)")
    return MEDIA


@pytest.fixture(scope="session")
def detector():
    from mer.faces import FaceDetector
    return FaceDetector(device="cpu")


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """A real (randomly initialised) mernet_cbam checkpoint for plumbing tests."""
    import torch
    import mer
    torch.manual_seed(0)
    card = mer.ModelCard(arch="mernet_cbam", classes=list(mer.CLASSES), input_size=(128, 128),
                         input_mode="gray", trained_on="nothing (random init, tests only)")
    return mer.save_checkpoint(mer.create_model("mernet_cbam"), card,
                               tmp_path_factory.mktemp("ckpt") / "untrained.safetensors")


@pytest.fixture(scope="session")
def default_checkpoint() -> Path:
    """The shipped per-frame default: the FER2013 macro-expression model (7 classes)."""
    from mer.predict import DEFAULT_CHECKPOINT
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the shipped default checkpoint is missing: {DEFAULT_CHECKPOINT}")
    return DEFAULT_CHECKPOINT


@pytest.fixture(scope="session")
def micro_checkpoint() -> Path:
    """The shipped micro-expression model (synthetic training data, 6 classes = mer.CLASSES)."""
    from mer.predict import MICRO_CHECKPOINT
    if not MICRO_CHECKPOINT.is_file():
        pytest.fail(f"the shipped micro-expression checkpoint is missing: {MICRO_CHECKPOINT}")
    return MICRO_CHECKPOINT


def mixed_inputs(d: Path, media: Path, seconds: float) -> Path:
    """A batch input folder: a generated two-face clip, a real clip in a subfolder (symlinked) and an
    empty file that must fail."""
    from batch.synth import make_face_clip
    make_face_clip(d / "a_two.mp4", [media / "single_face.jpg", media / "obama.jpg"], seconds=seconds)
    (d / "b").mkdir()
    (d / "b" / "single.mp4").symlink_to(media / "single_face.mp4")
    (d / "c_zero.mp4").write_bytes(b"")
    return d
