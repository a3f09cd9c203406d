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
    # pooled: one F1 over every fold's predictions (classes present in the truth), not a mean of folds
    present = sorted(set(pred.true))
    assert m["uf1"] == pytest.approx(f1_score(pred.true, pred.pred, labels=present, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(pred.true, pred.pred))
    assert m["unit"] == "clip" and all(f["epochs"] == 2 for f in m["folds"])
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
    # the weights are not the ones the scores were measured on, and the card says so
    assert "trained on all 3 subjects (18 clips) after the evaluation" in card.notes
    assert "metrics are of the 3 fold models" in card.notes and "the same recipe as the folds (2 epochs)" in card.notes
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
    assert r.returncode == 2 and "other settings" in r.stderr and "epochs" in r.stderr and "Traceback" not in r.stderr


def test_random_frames_is_labelled_leaky_and_leaks(tiny_set, tmp_path):
    from training.train import TrainConfig, run
    out = tmp_path / "rf"
    m = run(TrainConfig(dataset_path=str(tiny_set), arch="mernet", size=64, input="frames", frame_step=2,
                        protocol="random-frames", epochs=1, out=str(out), final=False, progress=False))
    assert m["leaky"] is True and "LEAKY" in m["protocol_description"]
    assert "LEAKY PROTOCOL" in (out / "report.md").read_text()
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    # the headline is per clip (mean of its test frames' probabilities); per frame beside it, labelled
    p_cols = [c for c in pred.columns if c.startswith("p_")]
    per_clip = pred.groupby(["subject", "clip"])
    clip_pred = per_clip[p_cols].mean().to_numpy().argmax(1)
    clip_true = per_clip.true.first().map(lambda c: p_cols.index(f"p_{c}")).to_numpy()
    assert m["unit"] == "clip" and m["n"] == per_clip.ngroups
    assert m["acc"] == pytest.approx((clip_pred == clip_true).mean())
    assert m["uar"] == pytest.approx(balanced_accuracy_score(clip_true, clip_pred))
    assert m["frame_level"]["n"] == len(pred)
    assert m["frame_level"]["acc"] == pytest.approx((pred.true == pred.pred).mean())
    clips = pd.read_csv(out / "clip_predictions.csv", dtype={"subject": str})
    assert len(clips) == m["n"] and clips.frames.sum() == len(pred)
    md = (out / "report.md").read_text()
    assert "per clip: mean of its frames' probabilities" in md and "per frame (each frame counted alone" in md
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
    assert np.array(m["confusion"]).sum() == 200 and sum(m["per_class_support"].values()) == 200
    # a class absent from the ground truth does not count in UF1/UAR
    m2 = pooled_metrics([0, 0, 1, 1], [0, 0, 1, 1], ["a", "b", "c"])
    assert m2["uf1"] == 1.0 and m2["uar"] == 1.0


def test_optical_flow_recovers_a_known_shift_and_flip_negates_u():
    from mer.flow import flow_input, optical_strain
    from training.train import BatchAugment
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((96, 96)) * 255).astype(np.uint8), (0, 0), 2)
    moved = np.roll(base, 2, axis=1)  # content moves 2 px to the right
    x = flow_input(np.dstack([base] * 3), np.dstack([moved] * 3))
    assert x.shape == (3, 96, 96)
    inner = x[:, 20:-20, 20:-20]
    assert np.median(inner[0]) == pytest.approx(2, abs=0.3) and abs(np.median(inner[1])) < 0.3
    assert np.allclose(inner[2], np.hypot(inner[0], inner[1]), atol=1e-4)
    assert np.median(optical_strain(np.dstack([x[0], x[1]]))[20:-20, 20:-20]) < 0.2  # rigid shift: ~no strain
    # whole-batch augmentation: every sample is the input shifted by whole pixels, or mirrored with u negated
    torch.manual_seed(0)
    t = torch.from_numpy(x)[None].repeat(24, 1, 1, 1)
    out = BatchAugment("flow")(t.clone())
    mirrored = torch.cat([-t[:1, :1].flip(-1), t[:1, 1:].flip(-1)], 1)[0]
    c = slice(8, -8)
    kinds = []
    for o in out:
        for name, src in (("plain", t[0]), ("mirror", mirrored)):
            if any(torch.allclose(o[:, c, c], torch.roll(src, (dy, dx), (-2, -1))[:, c, c], atol=1e-4)
                   for dy in range(-3, 4) for dx in range(-3, 4)):
                kinds.append(name)
                break
        else:
            pytest.fail("an augmented flow sample is neither a shift nor a mirror with u negated")
    assert set(kinds) == {"plain", "mirror"}
    assert len({tuple(o[0, 40:44, 40:44].flatten().tolist()) for o in out}) > 4  # each sample its own draw


def test_batch_augment_images_per_sample_draws_in_range():
    from training.train import BatchAugment
    torch.manual_seed(0)
    x = torch.zeros(32, 3, 64, 64)
    x[..., :32] = 0.8  # bright left half
    out = BatchAugment("apex")(x.clone())
    assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    left, right = out[..., 4:28].mean((1, 2, 3)), out[..., 36:60].mean((1, 2, 3))
    flipped = right > left
    assert 5 < int(flipped.sum()) < 27  # about half mirrored, per sample
    assert len({round(float(v), 4) for v in out[~flipped, :, 10:50, 4:28].mean((1, 2, 3))}) > 5  # own brightness
    assert BatchAugment("apex")(x[:0]).shape == (0, 3, 64, 64)


def test_training_evaluation_is_the_predictor_path(tmp_path):
    """Training's evaluation (in-memory model + card) and mer.Predictor on the saved checkpoint give the
    same probabilities for the same faces: one normalization, one softmax."""
    from mer import Predictor, save_checkpoint
    from training.train import TrainConfig, fit, make_card, predict_probs
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (12, 64, 64), dtype=np.uint8)
    crops = [np.dstack([g] * 3) for g in gray]  # gray faces as RGB crops
    x = torch.from_numpy(gray)[:, None].repeat(1, 3, 1, 1)  # training's uint8 samples of the same faces
    y = np.arange(12) % 3
    cfg = TrainConfig(arch="mernet", size=64, epochs=1, progress=False).resolve()
    card = make_card(cfg, ["a", "b", "c"], (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
    torch.manual_seed(0)
    model, info = fit(x, y, np.arange(12), cfg, card, torch.device("cpu"))
    p_train = predict_probs(Predictor.from_model(model, card, device="cpu"), x)
    path = save_checkpoint(model, card, tmp_path / "m.safetensors")
    p_file, _ = Predictor(path, device="cpu").classify(crops)
    assert info.epochs == 1 and p_train.shape == (12, 3)
    np.testing.assert_allclose(p_train, p_file, atol=1e-5)
    assert np.allclose(p_train.sum(1), 1, atol=1e-5) and p_train.std() > 1e-4


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
    # the flow std of each fold comes from its training subjects only (no test subject leaks into it)
    from training.datasets import load_dataset
    clips = load_dataset("samm", tiny_set, "seed6")
    cache, = (out / "cache").glob("inputs-*.pt")
    d = torch.load(cache, weights_only=True)
    subject = np.array([clips[i].subject for i in d["clip"].numpy()])
    pred = pd.read_csv(out / "predictions.csv", dtype={"subject": str})
    fold_std = {f["fold"]: f["std"][0] for f in json.loads((out / "metrics.json").read_text())["folds"]}
    assert card["std"][0] == pytest.approx(float(d["x"].std()), rel=1e-4)  # the final model: all subjects
    for fold, test_subjects in pred.groupby("fold").subject.unique().items():
        train = ~np.isin(subject, test_subjects)
        assert fold_std[fold] == pytest.approx(float(d["x"][train].std()), rel=1e-4)
        assert fold_std[fold] != pytest.approx(card["std"][0], rel=1e-4)
    # with early stopping the final model's recipe differs from the folds', and its card says how
    assert "not the folds' recipe" in card["notes"] and "median" in card["notes"]
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
    assert (out / "seed_cbam-scratch-loso-s1" / "report.md").is_file()
    # per-seed paired comparison CNN -> CBAM under each protocol, from the same seeds' runs
    pairs = pd.read_csv(out / "paired.csv")
    assert len(pairs) == 2 and set(pairs.protocol) == {"random-frames", "loso"} and (pairs.differs_in == "arch").all()
    for r in pairs.itertuples():
        u = runs[runs.protocol == r.protocol].set_index(["arch", "seed"]).uf1
        diff = np.array([u["seed_cbam", s] - u["seed_cnn", s] for s in (0, 1)])
        assert r.a == "seed_cnn (scratch)" and r.b == "seed_cbam (scratch)" and r.seeds == 2
        assert r.uf1_diff_mean == pytest.approx(diff.mean(), abs=1e-4) and r.b_better_seeds == (diff > 0).sum()
    assert "Paired by seed" in md and md.count("| loso | seed_cnn (scratch) | seed_cbam (scratch) | ") == 3


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


def test_resume_refuses_a_changed_dataset_and_csv_cells_are_escaped(tiny_set, tmp_path, capsys):
    """A folder dataset whose subject name is a spreadsheet formula: predictions.csv holds it escaped.
    Then a clip is removed: the same command refuses to mix the finished folds with the new clip list."""
    from training.__main__ import main
    from training.datasets import read_samm
    root = tmp_path / "folder"
    for c in read_samm(tiny_set):
        subject = "=HYPERLINK(1)" if c.subject == "001" else c.subject
        d = root / c.emotion / f"{subject}_{c.clip}"
        d.mkdir(parents=True)
        for f in c.frames:
            (d / f.name).symlink_to(f)
    out = tmp_path / "run"
    argv = ["--dataset", "folder", "--dataset-path", str(root), "--arch", "mernet", "--size", "64",
            "--epochs", "1", "--out", str(out), "--no-final", "--no-progress"]
    assert main(argv) == 0
    raw = pd.read_csv(out / "predictions.csv", dtype=str)
    assert set(raw.subject) == {"'=HYPERLINK(1)", "002", "003"}  # text, not a formula
    folds = sorted((out / "folds").glob("*"))
    before = [f.stat().st_mtime_ns for f in folds]
    import shutil
    shutil.rmtree(next((root / "Anger").iterdir()))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "dataset changed" in err and "18 clips of 3 subjects then, 17" in err
    assert [f.stat().st_mtime_ns for f in folds] == before  # nothing finished was lost


def test_init_loads_the_backbone_and_starts_a_fresh_classifier(tmp_path):
    """--init: every backbone tensor of the source checkpoint is copied, the classifier (its shape
    depends on the class count) is new even when the class counts agree, CBAM absent from the source is fresh."""
    from mer import ModelCard, create_model, save_checkpoint
    from training.train import TrainConfig, load_backbone, make_card
    torch.manual_seed(0)
    src_model = create_model("mernet", num_classes=3, input_size=64)
    src = save_checkpoint(src_model, ModelCard(arch="mernet", classes=["a", "b", "c"], input_size=(64, 64),
                                               arch_kwargs={"input_size": 64}), tmp_path / "src.safetensors")
    sd = src_model.state_dict()
    for arch in ("mernet", "mernet_cbam"):
        card = make_card(TrainConfig(arch=arch, size=64).resolve(), ["x", "y", "z"], (0.5,) * 3, (0.5,) * 3)
        model = card.build()
        got = load_backbone(model, card, src)
        own = model.state_dict()
        assert got["head"] and set(got["head"]) <= set(got["fresh"])
        for k in got["loaded"]:
            assert torch.equal(own[k], sd[k]), k
        for k in got["head"]:
            assert not torch.equal(own[k], sd[k]), k  # same shape (3 classes), still re-initialised
        backbone = [k for k in sd if k not in got["head"] and "num_batches" not in k]
        # only the source's classifier (and BatchNorm step counters) are left out
        assert sorted(k for k in got["unused"] if "num_batches" not in k) == sorted(got["head"])
        if arch == "mernet":
            assert sorted(got["loaded"]) == sorted(backbone)
        else:  # the same backbone plus CBAM, which the source does not have
            assert sorted(got["loaded"]) == sorted(backbone) and any(k not in sd for k in got["fresh"])
    with pytest.raises(ValueError, match="no tensor"):
        card = make_card(TrainConfig(arch="vit_tiny", size=64).resolve(), ["x", "y"], (0.5,) * 3, (0.5,) * 3)
        load_backbone(card.build(), card, src)


def test_init_fer2013_starts_mini_xception_from_the_macro_weights():
    """mini_xception and mini_xception_cbam take every FER2013 backbone tensor; the 7-class head is
    replaced by one for the label set; CBAM starts fresh."""
    from safetensors.torch import load_file
    from training.datasets import LABEL_SETS
    from training.train import TrainConfig, init_source, load_backbone, make_card
    path = init_source("fer2013")
    src = load_file(str(path))
    classes = LABEL_SETS["seed6"]
    for arch in ("mini_xception", "mini_xception_cbam"):
        cfg = TrainConfig(arch=arch, init="fer2013").resolve()
        card = make_card(cfg, classes, (0.5,) * 3, (0.5,) * 3)
        assert (card.in_chans, card.mean, card.std, card.input_size) == (1, (0.5,), (0.5,), (64, 64))
        model = card.build()
        got = load_backbone(model, card, path)
        assert got["head"] == ["head.bias", "head.weight"]
        assert [k for k in got["unused"] if "num_batches" not in k] == got["head"]
        assert sorted(got["loaded"]) == sorted(k for k in src if not k.startswith("head.") and "num_batches" not in k)
        own = model.state_dict()
        assert all(torch.equal(own[k], src[k]) for k in got["loaded"])
        assert own["head.weight"].shape[0] == 6
        fresh_extra = [k for k in got["fresh"] if k not in got["head"] and "num_batches" not in k]
        assert (arch == "mini_xception") == (not fresh_extra) and all(".cbam." in k for k in fresh_extra)
    with pytest.raises(FileNotFoundError, match="no weights"):
        init_source("fer2014")


def test_fer2013_init_trains_and_its_card_says_so(tiny_set, tmp_path, media):
    from mer import Predictor
    from training.train import TrainConfig, run
    out = tmp_path / "fer"
    m = run(TrainConfig(dataset_path=str(tiny_set), arch="mini_xception", init="fer2013", protocol="random-frames",
                        epochs=1, out=str(out), progress=False))
    assert m["n"] >= 3 and "init fer2013" in (out / "report.md").read_text()
    p = Predictor(out / "model.safetensors", device="cpu")
    assert p.card.in_chans == 1 and p.card.arch == "mini_xception" and len(p.classes) == 6
    assert "Started from the fer2013 weights (fer2013_mini_xception.safetensors)" in p.card.notes
    assert len(p.predict(media / "single_face.jpg")) == 1
    with pytest.raises(ValueError, match="no tensor of fer2013_mini_xception.safetensors fits mernet"):
        run(TrainConfig(dataset_path=str(tiny_set), arch="mernet", init="fer2013", out=str(tmp_path / "mismatch")))
    assert not (tmp_path / "mismatch" / "cache").exists()  # refused before any face detection
    with pytest.raises(ValueError, match="one gray channel"):
        run(TrainConfig(dataset_path=str(tiny_set), arch="mini_xception", color="rgb", out=str(tmp_path / "rgb")))
