"""The shipped default checkpoint: loads through Predictor, complete and honest card, and
`python -m mer predict IMAGE` works without --checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]


def test_default_checkpoint_is_small_and_its_card_is_complete_and_consistent(default_checkpoint):
    import mer
    assert default_checkpoint.stat().st_size < 5 * 2 ** 20  # a few MB at most
    p = mer.Predictor(device="cpu")  # no path: the default
    card = p.card
    assert p.checkpoint == default_checkpoint
    assert card.arch == "mernet_cbam" and tuple(card.classes) == mer.CLASSES
    assert card.input_mode == "gray" and card.input_size[0] >= 64
    assert "synthetic" in card.trained_on and "openly licensed" in card.trained_on
    assert "python -m training.synth" in card.trained_on
    assert card.training_command.startswith("python -m training ") and "--protocol loso" in card.training_command
    assert "LOSO" in card.protocol and "pooled" in card.protocol
    assert {"uf1", "uar", "acc"} <= set(card.metrics)
    assert "not a clinical or forensic tool" in card.notes
    assert card.versions.get("torch") and card.versions.get("python")
    # the sibling .json and the copy embedded in the safetensors metadata are the same card
    with safe_open(str(default_checkpoint), "pt") as f:
        embedded = json.loads(f.metadata()["mer_card"])
    assert embedded == json.loads(default_checkpoint.with_suffix(".json").read_text())


def test_default_checkpoint_learned_something_under_loso(default_checkpoint):
    """Chance for six balanced classes is 1/6; the card's pooled LOSO UAR must beat it clearly."""
    card = json.loads(default_checkpoint.with_suffix(".json").read_text())
    assert card["metrics"]["uar"] > 0.25 and card["metrics"]["uf1"] > 0.2


def test_cli_predicts_with_the_default_checkpoint(media):
    r = subprocess.run([sys.executable, "-m", "mer", "predict", str(media / "single_face.jpg"), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    faces = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    import mer
    assert len(faces) == 1 and faces[0]["top_class"] in mer.CLASSES
    assert abs(sum(faces[0]["probs"].values()) - 1) < 1e-4
