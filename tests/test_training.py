"""Training end to end on a tiny generated set (real MTCNN, real files), protocols, metrics, flow."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """3 synthetic subjects x 6 classes x 1 clip of 8 frames, SAMM layout (astronaut face)."""
    from training.synth import SynthConfig, generate
    out = tmp_path_factory.mktemp("synth")
    generate(out, None, SynthConfig(subjects=3, clips_per_class=1, size=96, frames=8, amplitude=8))
    return out


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def loso_run(tiny_set, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("runs") / "loso"
    r = cli("--dataset", "samm", "--dataset_path", str(tiny_set), "--labels", "seed6", "--input", "apex",
            "--arch", "mernet_cbam", "--size", "64", "--protocol", "loso", "--epochs", "2", "--out", str(out),
            "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_loso_run_writes_every_artefact(loso_run):
    out, r = loso_run
    for name in ("metrics.json", "predictions.csv", "confusion.png", "confusion.html", "report.md",
                 "model.safetensors", "model.json", "config.json"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "loso" and m["leaky"] is False and m["pooled"] is True
    assert [f["fold"] for f in m["folds"]] == ["samm/001", "samm/002", "samm/003"]
    assert np.array(m["confusion"]).sum() == m["n"] == 18
    assert 0 <= m["uf1"] <= 1 and 0 <= m["uar"] <= 1
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    assert len(pred) == 18 and set(pred.subject) == {"001", "002", "003"}
    # each clip is tested exactly once, in the fold of its own subject
    assert (pred.fold == "samm/" + pred.subject).all() and not pred.duplicated(["subject", "clip"]).any()
    probs = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    png = cv2.imread(str(out / "confusion.png"))
    assert png is not None and png.shape[0] > 200
    html = (out / "confusion.html").read_text()
    assert "plotly" in html.lower() and (out / "plotly.min.js").is_file()
    md = (out / "report.md").read_text()
    assert "LOSO (leave one subject out), 3 folds" in md and "LEAKY" not in md
    assert '"uf1"' in r.stdout


def test_final_checkpoint_loads_through_predictor_with_complete_card(loso_run, media):
    from mer import Predictor
    out, _ = loso_run
    p = Predictor(out / "model.safetensors", device="cpu")
    card = p.card
    assert card.arch == "mernet_cbam" and card.input_size == (64, 64) and card.input_mode == "gray"
    assert card.classes == ["Happiness", "Surprise", "Anger", "Fear", "Sadness", "Disgust"]
    assert "python -m training" in card.training_command and "--protocol loso" in card.training_command
    assert "LOSO" in card.protocol and {"uf1", "uar", "acc"} <= set(card.metrics)
    assert "18 clips, 3 subjects" in card.trained_on and "not a clinical or forensic tool" in card.notes
    assert card.versions.get("torch")
    preds = p.predict(media / "single_face.jpg")
    assert len(preds) == 1 and abs(sum(preds[0].probs.values()) - 1) < 1e-4


def test_rerun_resumes_finished_folds_and_refuses_other_settings(loso_run, tiny_set):
    out, _ = loso_run
    folds = sorted((out / "folds").glob("*.csv"))
    assert len(folds) == 3
    before = [f.stat().st_mtime_ns for f in folds]
    first = json.loads((out / "metrics.json").read_text())
    r = cli("--dataset-path", str(tiny_set), "--arch", "mernet_cbam", "--size", "64", "--epochs", "2",
            "--out", str(out), "--no-progress", "--no-final")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [f.stat().st_mtime_ns for f in folds] == before  # not retrained
    assert json.loads((out / "metrics.json").read_text())["confusion"] == first["confusion"]
    r = cli("--dataset-path", str(tiny_set), "--arch", "mernet_cbam", "--size", "64", "--epochs", "3",
            "--out", str(out), "--no-progress")
    assert r.returncode != 0 and "other settings" in r.stderr and "epochs" in r.stderr


def test_random_frames_is_labelled_leaky_and_leaks(tiny_set, tmp_path):
    from training.train import TrainConfig, run
    out = tmp_path / "rf"
    m = run(TrainConfig(dataset_path=str(tiny_set), arch="mernet", size=64, input="frames", frame_step=2,
                        protocol="random-frames", epochs=1, out=str(out), final=False, progress=False))
    assert m["leaky"] is True and "LEAKY" in m["protocol_description"]
    assert "LEAKY PROTOCOL" in (out / "report.md").read_text()
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    assert m["n"] == len(pred) and "clip_vote" in m
    # the leak itself: test frames whose clip also has frames in training
    n_frames = 18 * 4
    assert len(pred) == round(0.2 * n_frames) or len(pred) == int(0.2 * n_frames) + 1
    per_clip = pred.groupby(["subject", "clip"]).size()
    assert (per_clip < 4).any()  # a test clip whose other frames were trained on: the leak
    assert not (out / "model.safetensors").exists()  # --no-final


def test_protocols_keep_subjects_apart():
    from training.protocols import splits, validation_split
    groups = np.repeat(["a/1", "a/2", "b/1", "b/2", "b/3"], 4)
    for proto in ("loso", "kfold-subject"):
        folds = splits(proto, groups, folds=3, seed=1)
        assert len(folds) == (5 if proto == "loso" else 3)
        tested = np.concatenate([te for _, _, te in folds])
        assert sorted(tested.tolist()) == list(range(20))  # every sample tested exactly once
        for _, tr, te in folds:
            assert not set(groups[tr]) & set(groups[te])
    fit, val = validation_split(np.arange(20), groups, "loso", seed=0)
    assert not set(groups[fit]) & set(groups[val]) and len(val)
    (_, tr, te), = splits("random-frames", groups, seed=0)
    assert len(te) == 4 and set(groups[tr]) & set(groups[te])  # leaky by construction
    with pytest.raises(ValueError, match="at least 2 subjects"):
        splits("loso", np.array(["x"] * 3))
    with pytest.raises(ValueError, match="protocol"):
        splits("random", groups)


def test_pooled_metrics_match_scikit_learn():
    from training.metrics import pooled_metrics
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200); p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    m = pooled_metrics(y, p, ["a", "b", "c", "d"])
    assert m["uf1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["acc"] == pytest.approx((y == p).mean())
    # pooling: folds concatenated, not averaged per fold
    folds = [(y[:50], p[:50]), (y[50:], p[50:])]
    pooled = pooled_metrics(np.concatenate([a for a, _ in folds]), np.concatenate([b for _, b in folds]), list("abcd"))
    assert pooled["uf1"] == pytest.approx(m["uf1"])
    # a class absent from the ground truth does not count in UF1/UAR
    m2 = pooled_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b", "c"])
    assert m2["uf1"] == 1.0 and m2["uar"] == 1.0


def test_optical_flow_recovers_a_known_shift_and_flip_negates_u():
    from mer.flow import flow_input, optical_strain
    from training.train import augmenter
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((96, 96)) * 255).astype(np.uint8), (0, 0), 2)
    moved = np.roll(base, 2, axis=1)  # content moves 2 px to the right
    x = flow_input(np.dstack([base] * 3), np.dstack([moved] * 3))
    assert x.shape == (3, 96, 96)
    inner = x[:, 20:-20, 20:-20]
    assert np.median(inner[0]) == pytest.approx(2, abs=0.3) and abs(np.median(inner[1])) < 0.3
    assert np.allclose(inner[2], np.hypot(inner[0], inner[1]), atol=1e-4)
    assert np.median(optical_strain(np.dstack([x[0], x[1]]))[20:-20, 20:-20]) < 0.2  # rigid shift: ~no strain
    aug = augmenter("flow")
    torch.manual_seed(0)
    t = torch.from_numpy(x)
    flipped = [aug(t.clone()) for _ in range(20)]
    assert any(float(f[0].median()) < -1 for f in flipped) and any(float(f[0].median()) > 1 for f in flipped)


def test_flow_input_trains_and_its_checkpoint_refuses_single_images(tiny_set, tmp_path, media):
    from mer import CheckpointError, Predictor
    from training.train import TrainConfig, run
    out = tmp_path / "flow"
    run(TrainConfig(dataset_path=str(tiny_set), arch="mernet_cbam", size=64, input="flow", flow_third="strain",
                    protocol="kfold-subject", folds=3, epochs=1, class_weights=True, early_stopping=1,
                    out=str(out), progress=False))
    card = json.loads((out / "model.json").read_text())
    assert card["input_mode"] == "flow" and card["mean"] == [0.0, 0.0, 0.0] and card["std"][0] > 0
    assert "3-fold by subject" in card["protocol"]
    p = Predictor(out / "model.safetensors", device="cpu")
    with pytest.raises(CheckpointError, match="optical flow"):
        p.predict(media / "single_face.jpg")


def test_vit_tiny_builds_without_downloads_and_trains_a_step():
    from mer.models import create_model
    m = create_model("vit_tiny", num_classes=3, in_chans=1, input_size=64)
    x = torch.randn(2, 1, 64, 64)
    loss = m(x).logsumexp(1).mean()
    loss.backward()
    assert m(x).shape == (2, 3) and m.conv_proj.weight.grad is not None
    with pytest.raises(ValueError, match="divisible"):
        create_model("vit_tiny", input_size=70)


def test_cli_help_and_clear_errors(tiny_set, tmp_path):
    r = cli("--help")
    assert r.returncode == 0 and "--dataset-path" in r.stdout and "random-frames" in r.stdout
    r = cli("--dataset-path", str(tiny_set), "--labels", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    r = cli("--dataset-path", str(tmp_path / "missing"), "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "missing" in r.stderr and "Traceback" not in r.stderr


def test_ablation_writes_a_table_with_the_leakage_gap(tiny_set, tmp_path):
    from training.ablate import main
    out = tmp_path / "abl"
    assert main(["--dataset-path", str(tiny_set), "--input", "frames", "--frame-step", "4", "--size", "64",
                 "--epochs", "1", "--seeds", "0,1", "--out", str(out), "--no-progress"]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs.arch) == {"seed_cnn", "seed_cbam"}
    assert runs[runs.protocol == "random-frames"].leaky.all() and not runs[runs.protocol == "loso"].leaky.any()
    md = (out / "ablation.md").read_text()
    assert md.count("(LEAKY)") == 2 and md.count("loso (pooled)") == 2
    assert "python -m training.ablate" in md and "Leakage gap" in md
    gap = json.loads((out / "ablation.json").read_text())["leakage_gap"]
    mean = runs.groupby(["arch", "protocol"]).uf1.mean()
    for arch in ("seed_cnn", "seed_cbam"):
        assert gap[arch]["uf1"] == pytest.approx(mean[arch, "random-frames"] - mean[arch, "loso"], abs=1e-4)
    assert (out / "seed_cbam-loso-s1" / "report.md").is_file()


def test_synth_confound_adds_class_dependent_lighting_per_subject(tmp_path, detector):
    """--confound shifts each (subject, class) by its own lighting offset; 0 leaves frames alone."""
    from training.datasets import read_samm
    from training.synth import SynthConfig, generate
    means = {}
    for conf in (0.0, 1.0):
        out = tmp_path / f"c{conf}"
        generate(out, None, SynthConfig(subjects=2, clips_per_class=1, size=64, frames=4, confound=conf),
                 detector=detector)
        means[conf] = {(c.subject, c.emotion): float(cv2.imread(str(c.frames[0]), cv2.IMREAD_GRAYSCALE).mean())
                       for c in read_samm(out)}
    shift = pd.Series({k: means[1.0][k] - means[0.0][k] for k in means[0.0]})
    assert len(shift) == 12
    per_subject_spread = shift.groupby(level=0).std()
    assert (per_subject_spread > 3).all()  # classes lit differently within each subject
