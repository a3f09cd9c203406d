"""Spotting on generated clips (a real photo animated by training.synth_long, H.264, decoded by
decord) through the real pipeline (MTCNN, tracker, scorer, models), plus the MEGC rule and the
spotter on score series."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer.spotting import (INTERVAL_COLUMNS, MotionScorer, SpotConfig, iou, match, noise_level, prf, smooth_time,
                          spot)

FPS = 30.0
MICRO = (2.0, 2.36)   # seconds: the planted micro-expression


@pytest.fixture(scope="session")
def face(media, detector):
    from training.synth_long import load_faces
    return load_faces(media / "single_face.jpg", detector)[0]


def _clip(path, face, events, seed):
    from training.synth_long import LongConfig, render_video
    cfg = LongConfig(seconds=5.0, fps=FPS)
    return render_video(path, face, events, cfg, np.random.default_rng(seed))


@pytest.fixture(scope="session")
def clips(face, tmp_path_factory):
    """micro.mp4: one 0.36-s micro-expression (surprise: AU 1+2+5+26, 6 px at apex on a ~170 px
    face: the FACS-local warps move less skin than the old broad bumps did at 4 px) and a blink; still.mp4: nothing but head sway, lighting drift, noise and compression;
    vfr.mp4: micro.mp4 with irregular frame drops (timestamps kept)."""
    from training.synth_long import Event, expression, to_vfr
    d = tmp_path_factory.mktemp("spot_clips")
    rng = np.random.default_rng(3)
    micro = expression("micro", MICRO[0], MICRO[1] - MICRO[0], 6.0, "Surprise", rng)
    blink = Event("blink", 3.6, 3.8, 3.7, 1.0)
    out = {"micro": _clip(d / "micro.mp4", face, [micro, blink], 1),
           "still": _clip(d / "still.mp4", face, [], 2)}
    out["vfr"] = to_vfr(out["micro"], d / "vfr.mp4")
    return out


@pytest.fixture(scope="session")
def analysed(clips):
    from mer.predict import Predictor
    from mer.video import VideoSettings, analyze_video
    p = Predictor(device="cpu")
    s = VideoSettings(detect_every=2)
    return {k: analyze_video(v, p, s) for k, v in clips.items()}


def test_vfr_twin_really_is_variable_frame_rate(clips):
    import decord
    vr = decord.VideoReader(str(clips["vfr"]))
    dt = np.diff(np.asarray(vr.get_frame_timestamp(list(range(len(vr)))))[:, 0])
    assert len(vr) < 5 * FPS * 0.8 and dt.max() > 1.5 * dt.min()


def test_planted_micro_expression_gives_exactly_one_micro_interval(analysed):
    from mer.aus import INTERVAL_AU_COLUMNS
    iv = analysed["micro"].intervals
    assert list(iv.columns) == INTERVAL_COLUMNS + INTERVAL_AU_COLUMNS
    assert len(iv) == 1, iv.to_string()                     # the blink is not reported
    r = iv.iloc[0]
    assert r["type"] == "micro"
    truth = (np.floor(MICRO[0] * FPS) + 1, np.ceil(MICRO[1] * FPS) - 1)
    assert iou(r["onset_frame"], r["offset_frame"] + 1, truth[0], truth[1] + 1) >= 0.5
    assert r["onset_s"] <= r["apex_s"] <= r["offset_s"]
    # recognised by the AU proxies that rose (the default micro_by="aus"): their emotion, no probability
    assert r["recognized_by"] == "aus" and r["aus"] and r["class"] == r["emotion"] and np.isnan(r["prob"])
    # micro_by="micro_model": the same interval classified by the micro model from its kept apex crop
    from mer.predict import Predictor, micro_checkpoint
    from mer.video import recognize_intervals
    res, micro = analysed["micro"], Predictor(micro_checkpoint(), device="cpu")
    m = recognize_intervals(iv[INTERVAL_COLUMNS], res.frames, res.classes, res.apexes.nearest, micro, "micro_model").iloc[0]
    assert m["recognized_by"] == "micro_model" and m["class"] in micro.classes
    assert 0 < m["prob"] <= 1 and m["aus"] == r["aus"]
    # the default ("auto") spots a photo-animated face with the ECC scorer
    assert set(analysed["micro"].frames["motion_by"].dropna()) == {"ecc"}


def test_auto_chooses_flow_where_the_ecc_score_saturates():
    """mer.spotting.choose_method: "auto" spots a track whose median raw ECC score is over
    auto_ecc_median (a real face that turns, talks, cries: ECC's long references differ by more
    than any expression) with the flow scorer, a steady one with ECC; other methods are kept."""
    from mer.spotting import choose_method
    rng = np.random.default_rng(0)
    auto = SpotConfig.for_method("auto")
    quiet, saturated = 0.04 + 0.01 * rng.random(300), 0.6 + 0.2 * rng.random(300)
    assert choose_method(auto, quiet) == "ecc" and choose_method(auto, saturated) == "flow"
    assert choose_method(auto, np.r_[saturated, np.full(50, np.nan)]) == "flow"   # NaN: no score yet
    assert choose_method(SpotConfig(), saturated) == "ecc" and choose_method(SpotConfig.flow(), quiet) == "flow"
    assert auto.resolved("flow") == SpotConfig.flow() and auto.resolved("ecc") == SpotConfig()


def test_still_clip_gives_no_interval(analysed):
    assert len(analysed["still"].intervals) == 0
    m = analysed["still"].frames["motion"].dropna()
    assert len(m) > 100  # the score was computed, it just never stood out of its own noise


def test_vfr_clip_gives_the_cfr_intervals_in_seconds(analysed):
    a, b = analysed["micro"].intervals, analysed["vfr"].intervals
    assert len(a) == len(b) == 1
    frame = 1 / FPS
    for col in ("onset_s", "offset_s"):
        assert abs(a[col].iloc[0] - b[col].iloc[0]) <= frame + 1e-6, (a.to_string(), b.to_string())
    assert a["type"].iloc[0] == b["type"].iloc[0]


# ------------------------------------------------------------------------ spotter on score series

def _series(n=600, fps=30.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    return np.arange(n), t, t + 1 / fps, 0.05 + 0.005 * rng.standard_normal(n)


def test_noise_only_series_gives_nothing_and_plateaus_give_typed_intervals():
    fr, t0, t1, s = _series()
    cfg = SpotConfig()
    assert spot(fr, t0, t1, s, 0, cfg) == []
    s2 = s.copy()
    s2[100:109] += 0.1 * np.r_[0.25, 0.5, 0.75, 1, 1, 1, 0.75, 0.5, 0.25]  # 0.3 s rise-hold-fall -> micro
    s2[300:360] += 0.1            # 2 s plateau -> macro
    out = spot(fr, t0, t1, s2, 3, cfg)
    kinds = [(r["type"], r["onset_frame"], r["offset_frame"]) for r in out]
    assert [k[0] for k in kinds[:2]] == ["micro", "macro"], kinds
    assert iou(kinds[0][1], kinds[0][2] + 1, 100, 109) >= 0.5
    assert iou(kinds[1][1], kinds[1][2] + 1, 300, 360) >= 0.5
    assert all(r["face_id"] == 3 and set(r) == set(INTERVAL_COLUMNS) for r in out)


def test_a_weak_expression_is_found_by_its_peak_and_measured_by_its_whole_rise_and_fall():
    """Two levels (hysteresis): a 1.2-s rise and fall whose peak only just clears the detection
    level (median + min_rise) is cut at the lower extent level, so the interval covers most of it
    (IoU >= 0.5; cut at the detection level it was 0.47); a bump that reaches only the extent
    level is no interval."""
    fr, t0, t1, s = _series()
    bump = 0.025 * (1 - np.cos(np.linspace(0, 2 * np.pi, 36))) / 2
    weak, low = s.copy(), s.copy()
    weak[200:236] += bump
    low[400:436] += bump / 2               # peak 0.0125: above the extent level (0.01) only
    cfg = SpotConfig()
    out = spot(fr, t0, t1, weak, 0, cfg)
    assert len(out) == 1 and iou(out[0]["onset_frame"], out[0]["offset_frame"] + 1, 200, 236) >= 0.5, out
    assert spot(fr, t0, t1, low, 0, cfg) == []
    assert cfg.extent_c < cfg.c and cfg.extent_min_rise < cfg.min_rise


def test_threshold_follows_the_tracks_own_noise():
    fr, t0, t1, s = _series()
    loud = 0.05 + 20 * (s - 0.05)        # a talking face: twenty times the movement everywhere
    loud[100:109] += 0.1                  # the same bump is now inside the noise
    assert spot(fr, t0, t1, loud, 0, SpotConfig()) == []
    med, sigma = noise_level(loud)
    assert sigma == pytest.approx(0.1, rel=0.3)


def test_smoothing_and_durations_use_real_timestamps():
    # the same bump sampled at 30 fps and with every other frame dropped: same interval in seconds
    fr, t0, t1, s = _series(seed=1)
    s[150:160] += 0.1
    a = spot(fr, t0, t1, s, 0, SpotConfig())
    keep = np.ones(len(fr), bool)
    keep[1::3] = False
    b = spot(fr[keep], t0[keep], np.r_[t0[keep][1:], t1[-1]], s[keep], 0, SpotConfig())
    assert len(a) == len(b) == 1
    assert abs(a[0]["onset_s"] - b[0]["onset_s"]) <= 1 / 30 + 1e-6
    assert abs(a[0]["offset_s"] - b[0]["offset_s"]) <= 1 / 30 + 1e-6
    assert np.allclose(smooth_time(np.ones(5), np.array([0, 0.1, 0.5, 0.55, 2.0]), 0.2), 1)


def test_dips_inside_an_expression_do_not_split_it_and_cut_runs_are_dropped():
    fr, t0, t1, s = _series(seed=2)
    s[200:206] += 0.1             # one expression whose score dips under the threshold ...
    s[210:216] += 0.1             # ... for 0.13 s (0.07 s under it after smoothing; merge_s 0.1): one interval
    s[-8:] += 0.1                 # a rise cut by the track's last frame: its offset is never seen
    out = spot(fr, t0, t1, s, 0, SpotConfig())
    assert len(out) == 1, out
    assert iou(out[0]["onset_frame"], out[0]["offset_frame"] + 1, 200, 216) >= 0.5
    apart = spot(fr, t0, t1, s, 0, SpotConfig(merge_s=0.03))    # bridging off: two lobes
    assert len(apart) == 2
    assert len(spot(fr, t0, t1, s, 0, SpotConfig(drop_cut=False))) == 2


def test_subject_is_the_long_track_nearest_the_centre():
    from training.spot import subject_track
    rows = []
    for fid, x, prob in ((0, 10, 0.9999), (1, 200, 0.99), (2, 220, 0.999)):
        n = 100 if fid < 2 else 20                               # track 2: a short one
        rows += [{"face_id": fid, "frame": i, "x1": x, "y1": 100, "x2": x + 80, "y2": 200, "det_prob": prob}
                 for i in range(n)]
    df = pd.DataFrame(rows)
    assert set(subject_track(df, (480, 360))["face_id"]) == {1}   # the framed subject, not the bystander
    assert set(subject_track(df)["face_id"]) == {0}               # no frame size: the most confident


def test_scorer_is_streaming_and_memory_flat():
    rng = np.random.default_rng(0)
    sc = MotionScorer(SpotConfig(window_s=1.0, crop=32))
    out, sizes = [], []
    for i in range(400):
        out += sc.push(0, i, i / 30, crop=rng.integers(0, 255, (32, 32)).astype(np.uint8))
        sizes.append(len(sc.tracks[0]["t"]))
    out += sc.flush()
    assert sorted(f for _, f, _ in out) == list(range(400))      # one score per frame
    assert max(sizes) <= 2 * 30 + 3                               # 2 x window_s of crops, not the video
    assert np.isfinite([s for *_, s in out]).all()


# ----------------------------------------------------------------------------------- MEGC rule

def test_megc_matching_counts_each_truth_once():
    truth = [(10, 19), (100, 109)]
    spotted = [(10, 19), (11, 20), (100, 104), (300, 310)]
    m = match(spotted, truth)
    assert sorted((i, j) for i, j, _ in m) == [(0, 0), (2, 1)]   # (11, 20) duplicates a matched truth
    assert iou(100, 105, 100, 110) == pytest.approx(0.5)           # IoU 0.5 counts
    assert match([(100, 103)], [(100, 109)]) == []                 # IoU 0.4 does not
    r = prf(len(m), len(spotted), len(truth))
    assert (r["TP"], r["precision"], r["recall"], r["F1"]) == (2, 0.5, 1.0, pytest.approx(0.6667, abs=1e-4))
    assert prf(0, 0, 0)["F1"] == 0.0


def test_megc_scoring_is_per_type():
    from training.datasets.longvideo import Expression, LongVideo
    from training.spot import evaluate
    v = LongVideo("synth", "a", "v", [Expression("micro", 10, 12, 19), Expression("macro", 100, 120, 160)])
    iv = pd.DataFrame([{"type": "macro", "onset_frame": 10, "offset_frame": 19},      # right place, wrong type
                       {"type": "macro", "onset_frame": 101, "offset_frame": 158}], columns=INTERVAL_COLUMNS)
    res, matches = evaluate([iv], [v])
    assert (res["micro"]["TP"], res["micro"]["n_spotted"], res["micro"]["n_true"]) == (0, 0, 1)
    assert (res["macro"]["TP"], res["macro"]["n_spotted"], res["macro"]["n_true"]) == (1, 2, 1)
    assert (res["overall"]["TP"], res["overall"]["n_spotted"], res["overall"]["n_true"]) == (1, 2, 2)
    assert matches == [[{"spotted": 1, "truth": 1, "iou": pytest.approx(58 / 61, abs=1e-3)}]]


# ------------------------------------------------------------------------------- training.spot

def test_training_spot_end_to_end(clips, analysed, tmp_path):
    """Two subjects' videos in the synth_long layout; the per-frame tables come from the analyses
    above through training.spot's cache (the same tables it would compute)."""
    import json
    from mer.predict import default_checkpoint, micro_checkpoint
    from mer.video import VideoSettings
    from training.spot import cache_key, main, save_analysis
    ds, out = tmp_path / "ds", tmp_path / "run"
    (ds / "videos").mkdir(parents=True)
    (ds / "videos" / "a_000.mp4").symlink_to(clips["micro"])
    (ds / "videos" / "b_001.mp4").symlink_to(clips["still"])
    on, off = int(np.floor(MICRO[0] * FPS)) + 1, int(np.ceil(MICRO[1] * FPS)) - 1
    pd.DataFrame([{"Subject": "a", "Filename": "a_000", "Onset": on, "Apex": (on + off) // 2, "Offset": off,
                   "Duration": off - on + 1, "Type": "Micro - 1/2", "Action Units": "1+2+5+26",
                   "Estimated Emotion": "Surprise"}]).to_csv(ds / "truth.csv", index=False)
    cache = out / "cache" / cache_key(VideoSettings(detect_every=2), [default_checkpoint(), micro_checkpoint()])
    for name, key in (("a_000", "micro"), ("b_001", "still")):
        save_analysis(analysed[key], cache, name)
    assert main(["--dataset", "synth", "--dataset-path", str(ds), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [p.parent.name for p in (out / "cache").rglob("*.frames.csv")] == [cache.name] * 2  # served from it
    for t in ("micro", "macro", "overall"):
        assert {"TP", "n_spotted", "n_true", "precision", "recall", "F1"} <= set(m[t])
    assert (m["micro"]["n_true"], m["macro"]["n_true"], m["subjects"]) == (1, 0, 2)
    assert m["defaults"]["micro"]["TP"] == 1 and m["defaults"]["overall"]["n_spotted"] == 1
    assert len(m["folds"]) == 2 and "GroupKFold" in m["protocol"]
    assert m["recognition"]["micro"]["n"] == m["micro"]["TP"]
    iv = pd.read_csv(out / "videos" / "a_000.intervals.csv")
    assert list(iv.columns[:len(INTERVAL_COLUMNS)]) == INTERVAL_COLUMNS and "tp" in iv.columns
    # the intervals carry the shipped AU columns (mer.aus.label_intervals), as analyze_video's do
    assert list(iv.columns[len(INTERVAL_COLUMNS):len(INTERVAL_COLUMNS) + 3]) == ["aus", "objective_class", "emotion"]
    assert len(iv) and set(iv["objective_class"]) <= {"I", "II", "III", "IV", "V", "VI", "VII"}
    shipped = analysed["micro"].intervals.set_index(["onset_frame", "offset_frame"])
    for r in iv.itertuples():  # an interval the shipped pipeline also cut gets the same AU labels
        if (r.onset_frame, r.offset_frame) in shipped.index:
            got = [("" if pd.isna(x) else x) for x in (r.aus, r.objective_class, r.emotion)]
            want = shipped.loc[(r.onset_frame, r.offset_frame), ["aus", "objective_class", "emotion"]].tolist()
            assert got == [("" if pd.isna(x) else x) for x in want]
    assert (out / "videos" / "a_000.truth.csv").is_file() and "| micro |" in (out / "report.md").read_text()
    assert main(["--dataset", "samm-lv", "--dataset-path", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_training_spot_on_a_casme2_frame_folder(clips, tmp_path):
    """The frame-folder path (CAS(ME)^2 layout, 30 fps): the micro clip's frames as img<N>.jpg."""
    import json
    import cv2
    import decord
    import openpyxl
    from training.spot import main
    root = tmp_path / "casme"
    d = root / "rawpic" / "s15" / "15_0101disgustingteeth"
    d.mkdir(parents=True)
    vr = decord.VideoReader(str(clips["micro"]))
    for i in range(len(vr)):
        cv2.imwrite(str(d / f"img{i + 1}.jpg"), cv2.cvtColor(vr[i].asnumpy(), cv2.COLOR_RGB2BGR))
    on, off = int(np.floor(MICRO[0] * FPS)) + 1, int(np.ceil(MICRO[1] * FPS)) - 1
    wb = openpyxl.Workbook()
    wb.active.append([1, "disgust1_1", on + 1, (on + off) // 2 + 1, off + 1, "1+2+5+26", "surprise", "micro-expression"])
    wb.create_sheet("subjects").append(["x", 15, 1])
    wb.create_sheet("videos").append(["0101", "disgust1"])
    wb.save(root / "CAS(ME)^2code_final.xlsx")
    out = tmp_path / "run"
    assert main(["--dataset", "casme2-lv", "--dataset-path", str(root), "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["subjects"] == 1 and "no cross-validation" in m["protocol"]
    assert (m["micro"]["TP"], m["micro"]["n_true"], m["overall"]["n_spotted"]) == (1, 1, 1)
    cached = pd.read_csv(out / "cache" / m["cache_key"] / "15_0101disgustingteeth.frames.csv")
    assert len(cached) == len(vr) and cached["motion"].notna().sum() > 100


def test_training_spot_takes_several_dataset_folders_with_unique_names(tmp_path, capsys):
    from training.spot import load_all, main
    for d, name in (("a", "s01_000"), ("b", "s02_000"), ("c", "s01_000")):
        (tmp_path / d / "videos").mkdir(parents=True)
        (tmp_path / d / "videos" / f"{name}.mp4").write_bytes(b"")   # never decoded here
        pd.DataFrame([{"Subject": name[:3], "Filename": name, "Onset": 10, "Apex": 12, "Offset": 15,
                       "Type": "Micro - 1/2"}]).to_csv(tmp_path / d / "truth.csv", index=False)
    vs = load_all("synth", [tmp_path / "a", tmp_path / "b"])
    assert [(v.name, v.group, len(v.expressions)) for v in vs] == [("s01_000", "synth/s01", 1), ("s02_000", "synth/s02", 1)]
    assert main(["--dataset", "synth", "--dataset-path", str(tmp_path / "a"), str(tmp_path / "c"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "s01_000" in capsys.readouterr().err and not (tmp_path / "run" / "metrics.json").exists()


# ------------------------------------------------------------------ ended tracks, ties, purity

def test_ended_tracks_are_scored_and_released_as_the_stream_advances(media, detector):
    """20 faces one after another, 3 s each (15 fps), through the real motion stage ("auto": the ECC
    and the flow scorer) into the rows: the crops held stay bounded by the live tracks (main held
    all 900 until the end), each ended track's scores come before the stream ends, identical to
    scoring that track alone and flushing, with each scorer."""
    import cv2
    from mer.video import FaceRecord, FrameRecord, Motion, Rows
    photo = cv2.cvtColor(cv2.imread(str(media / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    face = detector.detect([photo])[0][0]
    fps, n_tracks, per_track = 15.0, 20, 45

    def frame(i):
        noise = np.random.default_rng(i).integers(-6, 7, photo.shape)
        return np.clip(photo.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    cfg = SpotConfig.for_method("auto")
    rows = Rows(0, cfg.scorers())
    motion = Motion(cfg, rows.scored, 6, 3, 0)
    sc = motion.scorers["ecc"]
    held, pending, emitted = [], [], {}
    for i in range(n_tracks * per_track):
        rec = FaceRecord(i // per_track, face, True, crop=photo[:64, :64], probs=np.zeros(0, np.float32))
        f = FrameRecord(i, i / fps, (i + 1) / fps, frame(i), faces=[rec])
        rows.add([f])
        motion([f])
        held.append(sum(m.held for m in motion.scorers.values()))
        pending.append(len(motion.pending))
        for fid in {rows.face_id[r] for r, v in enumerate(rows.motion["ecc"]) if np.isfinite(v)}:
            emitted.setdefault(fid, i)
    t_end = (n_tracks * per_track - 1) / fps
    motion.flush()
    live = 2 * cfg.window_s * fps                       # the crops one live track keeps
    assert max(held) <= 2 * live and max(pending) <= 2 * live, (max(held), max(pending))
    ended = [j for j in range(n_tracks) if (j + 1) * per_track / fps < t_end - sc.span_s]
    assert len(ended) >= 15 and all(j in emitted for j in ended)   # scored before the stream ended
    assert not rows.waiting and not motion.pending
    assert all(np.isfinite(v).all() and len(v) == len(rows.face_id) for v in rows.motion.values())
    for m in cfg.scorers():
        for j in (0, 7, n_tracks - 1):                  # the same scores as flush() on that track alone
            ref = MotionScorer(cfg.resolved(m))
            out = []
            for i in range(j * per_track, (j + 1) * per_track):
                out += ref.push(j, i, i / fps, frame(i), face)
            out += ref.flush()
            got = [rows.motion[m][i] for i in range(j * per_track, (j + 1) * per_track)]
            assert got == [s for _, _, s in sorted(out, key=lambda o: o[1])], m


def test_padding_ties_go_outwards_on_both_sides():
    n, fps = 200, 20.0
    t = np.arange(n) / fps
    s = 0.05 + 0.001 * np.sin(np.arange(n))
    s[100:106] = 0.3                                    # core: frames 100..105
    out = spot(np.arange(n), t, t + 1 / fps, s, 0, SpotConfig(pad_s=0.075, smooth_s=0))
    assert len(out) == 1
    # 0.075 s of padding is 1.5 frames: frames 98/99 and 106/107 are equally near; the tie goes outwards
    assert (out[0]["onset_frame"], out[0]["offset_frame"]) == (98, 107)


def test_spot_intervals_leaves_its_input_unchanged():
    from mer.video import spot_intervals
    fr, t0, t1, s = _series(seed=4)
    s[300:309] += 0.1
    frames = pd.DataFrame({"frame": fr, "time_s": t0, "face_id": pd.array([0] * len(fr), dtype="Int64"),
                           "motion": smooth_time(s, t0, SpotConfig().smooth_s)})
    before = frames.copy()
    iv = spot_intervals(frames, t1, SpotConfig())
    pd.testing.assert_frame_equal(frames, before)
    assert len(iv) == 1 and list(iv.columns) == INTERVAL_COLUMNS
    assert iv.iloc[0]["onset_frame"] <= 300 <= iv.iloc[0]["apex_frame"] <= 309 <= iv.iloc[0]["offset_frame"]


def test_visibility_bench_measures_the_warp_against_the_clean_twin(media, tmp_path):
    """bench/spot_visibility.py (issue 17's diagnosis): a planted macro-expression on a photo face
    moves the flow scorer's crop against its clean twin (same seed, amplitude 0) more than the
    photo's own sway does over the scorer's window; a folder that is not the twin is refused."""
    import importlib.util
    import shutil
    from training.synth_long import main as synth
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(media / "single_face.jpg", photos)
    common = ["--faces", str(photos), "--videos", "1", "--seconds", "8", "--seed", "5", "--micro-per-min", "0",
              "--macro-per-min", "20", "--blinks-per-min", "0", "--shifts-per-min", "0"]
    synth(common + ["--out", str(tmp_path / "planted"), "--macro-amp", "6", "7"])
    synth(common + ["--out", str(tmp_path / "clean"), "--macro-amp", "0", "0"])
    spec = importlib.util.spec_from_file_location("spot_visibility", "bench/spot_visibility.py")
    vis = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vis)
    df = vis.measure(tmp_path / "planted", tmp_path / "clean")
    assert len(df) >= 1 and set(df["type"]) == {"macro"}
    assert (df["planted"] > 2 * df["natural"]).all(), df
    # the twin of nothing: its truth differs
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "clean", other)
    t = pd.read_csv(other / "truth.csv")
    t["Onset"] += 1
    t.to_csv(other / "truth.csv", index=False)
    with pytest.raises(SystemExit, match="not the clean twin"):
        vis.measure(tmp_path / "planted", other)
    with pytest.raises(SystemExit) as usage:
        vis.main([str(tmp_path / "planted"), str(tmp_path / "clean"), "--k-s", "0"])
    assert usage.value.code == 2
