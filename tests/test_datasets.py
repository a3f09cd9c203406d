"""Dataset readers on tiny fixtures built here: real JPEG/BMP/PNG frames and real .xlsx sheets (openpyxl)."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pytest

from training.datasets import (LABEL_SETS, READERS, Clip, classes_of, discover_composite, load_dataset,
                               map_label, read_casme2, read_folder, read_samm, read_smic)

SAMM_COLS = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
             "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]
CASME2_COLS = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
               "Estimated Emotion"]


def frames(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, n in enumerate(names):
        img = np.full((16, 16), (20 * i) % 256, np.uint8)
        assert cv2.imwrite(str(folder / n), img), folder / n
        out.append(folder / n)
    return out


def samm_row(subject, name, on, apex, off, emotion):
    return {"Subject": subject, "Filename": name, "Inducement Code": 1, "Onset Frame": on, "Apex Frame": apex,
            "Offset Frame": off, "Duration": off - on + 1, "Micro": "Micro - 1/2", "Action Units": "R12",
            "Estimated Emotion": emotion, "Objective Classes": 1, "Notes": ""}


def write_samm_sheet(path: Path, rows, trailing_blank=3):
    """As SAMM ships it: 13 preamble rows (text and blank lines), the header on row 14, data from row 15,
    then rows that only look blank (a space, a styled empty cell)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    preamble = {1: "SAMM: Spontaneous Actions and Micro-Movements", 2: "Micro-Facial Movement FACS codes",
                4: "Manchester Metropolitan University", 6: "Frames are numbered from the start of each video",
                9: "Version 2", 12: "Columns:"}
    for r, text in preamble.items():
        ws.cell(row=r, column=1, value=text)
    for j, c in enumerate(SAMM_COLS, 1):
        ws.cell(row=14, column=j, value=c)
    for i, row in enumerate(rows):
        for j, c in enumerate(SAMM_COLS, 1):
            if row.get(c) is not None:
                ws.cell(row=15 + i, column=j, value=row[c])
    for k in range(trailing_blank):
        r = 15 + len(rows) + k
        ws.cell(row=r, column=1, value=" ")
        ws.cell(row=r, column=len(SAMM_COLS), value=" ")
        ws.cell(row=r, column=2).font = openpyxl.styles.Font(bold=True)
    wb.save(path)


SAMM_ROWS = [
    samm_row(6, "006_1_2", 10, 12, 14, "Happiness"),     # good; subject typed as the number 6
    samm_row(6, "006_1_3", 20, "-", 24, "Others"),       # apex "-" -> middle; "Others" -> "Other"
    samm_row(7, "007_2_1", 100, 200, 104, "Other"),      # apex outside [onset, offset] -> middle
    samm_row(7, "007_2_2", 30, 31, 33, "Anger"),         # one frame missing on disk -> skipped
    samm_row("011", "011_3_1", 50, 51, 52, "Contempt"),  # subject folder directly under the root
    samm_row(6, "006_5_1", 60, 61, 62, "Fear"),          # no frames folder at all -> skipped
    samm_row(7, "007_6_1", 70, None, 73, " surprise "),  # apex blank -> middle; spelling normalised
    samm_row(7, "007_7_1", 80, 82, 83, "Sadness"),
]


@pytest.fixture
def samm_root(tmp_path) -> Path:
    root = tmp_path / "SAMM_v2"
    root.mkdir()
    write_samm_sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_ROWS)
    for r in SAMM_ROWS:
        subj, name = f"{int(r['Subject']):03d}", r["Filename"]
        if name == "006_5_1":
            continue
        base = root if subj == "011" else root / "SAMM"
        names = [f"{subj}_{i:05d}.jpg" for i in range(r["Onset Frame"], r["Offset Frame"] + 1)]
        if name == "007_2_2":
            names.remove("007_00032.jpg")
        frames(base / subj / name, names)
    return root


def write_casme2_sheet(path: Path, rows):
    pd.DataFrame(rows, columns=CASME2_COLS).to_excel(path, index=False)


CASME2_ROWS = [
    [1, "EP02_01f", 46, 48, 50, "4+12", "happiness"],
    [1, "EP03_02", 10, "/", 13, "14", "repression"],   # apex "/" -> middle
    [2, "EP01_11f", 5, 6, 8, "1+2", "others"],         # only cropped reg_img frames
    ["sub03", "EP04_01", 1, 2, 3, "1+2+25", "surprise"],  # raw and cropped: raw preferred
    [6, "EP05_02", 1, 2, 4, "9", "disgust"],           # frame 3 missing -> skipped
    [3, "EP07_01", 20, 21, 22, "1+4", "fear"],
    [2, "EP08_03", 30, 31, 32, "4+15", "sadness"],     # raw has a gap, cropped complete -> reg_img
]


@pytest.fixture
def casme2_root(tmp_path) -> Path:
    root = tmp_path / "CASME2"
    root.mkdir()
    write_casme2_sheet(root / "CASME2-coding-20140508.xlsx", CASME2_ROWS)
    raw, crop = root / "CASME2_RAW_selected", root / "Cropped"
    frames(raw / "sub01" / "EP02_01f", [f"img{i}.jpg" for i in range(46, 51)])
    frames(raw / "sub01" / "EP03_02", [f"img{i}.jpg" for i in range(10, 14)])
    frames(crop / "sub02" / "EP01_11f", [f"reg_img{i}.jpg" for i in range(5, 9)])
    frames(raw / "sub03" / "EP04_01", [f"img{i}.jpg" for i in range(1, 4)])
    frames(crop / "sub03" / "EP04_01", [f"reg_img{i}.jpg" for i in range(1, 4)])
    frames(raw / "sub06" / "EP05_02", [f"img{i}.jpg" for i in (1, 2, 4)])
    frames(raw / "sub03" / "EP07_01", [f"img{i}.jpg" for i in range(20, 23)])
    frames(raw / "sub02" / "EP08_03", ["img30.jpg", "img32.jpg"])
    frames(crop / "sub02" / "EP08_03", [f"reg_img{i}.jpg" for i in range(30, 33)])
    return root


@pytest.fixture
def smic_root(tmp_path) -> Path:
    root = tmp_path / "SMIC"
    hs = root / "HS"
    frames(hs / "s1" / "micro" / "negative" / "s1_ne_01", [f"image{i}.bmp" for i in (9, 10, 11, 100, 8)])
    frames(hs / "s1" / "micro" / "surprise" / "s1_sur_01", [f"image{i:07d}.bmp" for i in range(500, 503)])
    frames(hs / "s2" / "micro" / "positive" / "s2_po_03", [f"image{i:07d}.bmp" for i in range(1, 3)])
    frames(hs / "s1" / "non_micro" / "s1_no_01", [f"image{i:07d}.bmp" for i in range(1, 4)])  # ignored
    return root


@pytest.fixture
def folder_root(tmp_path) -> Path:
    root = tmp_path / "myset"
    frames(root / "happiness" / "006_a", ["f1.png", "f10.png", "f2.png"])
    (root / "happiness" / "006_a" / "apex.txt").write_text("f10.png\n")
    frames(root / "Surprise" / "007_b_long", ["x_01.bmp", "x_02.bmp", "x_03.bmp", "x_04.bmp"])
    frames(root / "contempt" / "008_c", ["1.jpg", "2.jpg"])
    frames(root / "happiness" / "loner", ["1.jpg"])
    return root


def by_name(clips):
    return {c.clip: c for c in clips}


def warnings_about(caplog, text):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


# ---------------------------------------------------------------- SAMM

def test_samm_header_is_found_where_the_sheet_has_it(samm_root, tmp_path, caplog):
    """SAMM ships its header on row 14; a re-saved sheet may have it on row 1 or lower down. The
    reader finds it, warns naming the row, and reads the very same clips as from the original sheet."""
    want = [(c.clip, c.subject, c.emotion, c.apex, len(c.frames)) for c in read_samm(samm_root)]
    assert len(want) == 6
    sheet = samm_root / "SAMM_Micro_FACS_Codes_v2.xlsx"
    table = list(openpyxl.load_workbook(sheet).active.iter_rows(min_row=14, values_only=True))
    for header_row in (1, 20):
        caplog.clear()
        wb = openpyxl.Workbook()
        if header_row > 1:
            wb.active.cell(row=1, column=1, value="re-saved copy")
        for r, row in enumerate(table):
            for j, v in enumerate(row, 1):
                if v is not None:
                    wb.active.cell(row=header_row + r, column=j, value=v)
        wb.save(sheet)
        got = [(c.clip, c.subject, c.emotion, c.apex, len(c.frames)) for c in read_samm(samm_root)]
        assert got == want, header_row
        assert warnings_about(caplog, f"header found on row {header_row}, expected row 14")


def test_read_samm(samm_root, caplog):
    caplog.set_level(logging.INFO)
    clips = read_samm(samm_root)
    got = by_name(clips)
    assert list(got) == ["006_1_2", "006_1_3", "007_2_1", "011_3_1", "007_6_1", "007_7_1"]
    assert all(isinstance(c, Clip) and c.dataset == "samm" for c in clips)
    c = got["006_1_2"]
    assert (c.subject, c.emotion, c.apex, c.group) == ("006", "Happiness", 2, "samm/006")
    assert [p.name for p in c.frames] == [f"006_{i:05d}.jpg" for i in range(10, 15)]
    assert all(p.is_file() for cl in clips for p in cl.frames)
    assert c.frames[0].parent == samm_root / "SAMM" / "006" / "006_1_2"
    assert got["006_1_3"].emotion == "Other" and got["007_2_1"].emotion == "Other"
    assert got["006_1_3"].apex == 2                       # 20..24, apex "-" -> middle
    assert got["007_2_1"].apex == 2                       # 100..104, apex 200 -> middle
    assert got["007_6_1"].apex == 1 and got["007_6_1"].emotion == "Surprise"  # 70..73, blank -> 71
    assert got["011_3_1"].subject == "011" and got["011_3_1"].frames[0].parent == samm_root / "011" / "011_3_1"
    assert got["011_3_1"].apex == 1
    # every rule that changes or drops something says so, naming the clip
    assert warnings_about(caplog, "007_2_1") and "outside" in warnings_about(caplog, "007_2_1")[0]
    assert warnings_about(caplog, "006_1_3") and warnings_about(caplog, "007_6_1")
    miss = warnings_about(caplog, "007_2_2")
    assert miss and "1 of 4 frames missing" in miss[0]
    assert warnings_about(caplog, "006_5_1") and "3 of 3" in warnings_about(caplog, "006_5_1")[0]
    assert not warnings_about(caplog, "006_1_2") and not warnings_about(caplog, "header found")
    assert len(warnings_about(caplog, "SAMM")) == 5  # the trailing blank rows are ignored without a word


def test_samm_sheet_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAMM_Micro_FACS_Codes"):
        read_samm(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_samm(tmp_path / "nowhere")
    # a sheet without the expected columns: a clear error naming them
    pd.DataFrame({"Subj": [6], "Clip": ["006_1_2"]}).to_excel(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx",
                                                              index=False)
    with pytest.raises(ValueError, match="Onset Frame"):
        read_samm(tmp_path)


def test_samm_reads_synthetic_generator_output(tmp_path):
    """training.synth writes the SAMM layout; the reader must agree with it."""
    from training.synth import EMOTIONS, SynthConfig, generate
    out, _ = generate(tmp_path / "synth", None, SynthConfig(subjects=2, clips_per_class=1, size=64, frames=6))
    clips = read_samm(out)
    assert len(clips) == 2 * 6
    assert sorted({c.subject for c in clips}) == ["001", "002"]
    for s in ("001", "002"):
        assert sorted(c.emotion for c in clips if c.subject == s) == sorted(EMOTIONS)
    assert all(len(c.frames) == 6 and 0 <= c.apex < 6 for c in clips)
    assert cv2.imread(str(clips[0].frames[clips[0].apex])).shape[:2] == (64, 64)
    assert {c.label for c in load_dataset("samm", out, "seed6")} == set(LABEL_SETS["seed6"])


# ---------------------------------------------------------------- CASME II

def test_read_casme2(casme2_root, caplog):
    caplog.set_level(logging.WARNING)
    got = by_name(read_casme2(casme2_root))
    assert list(got) == ["EP02_01f", "EP03_02", "EP01_11f", "EP04_01", "EP07_01", "EP08_03"]
    c = got["EP02_01f"]
    assert (c.dataset, c.subject, c.emotion, c.apex, c.group) == ("casme2", "sub01", "Happiness", 2,
                                                                   "casme2/sub01")
    assert [p.name for p in c.frames] == [f"img{i}.jpg" for i in range(46, 51)]
    assert got["EP03_02"].emotion == "Repression" and got["EP03_02"].apex == 1  # "/" -> middle of 10..13
    assert warnings_about(caplog, "EP03_02")
    cropped = got["EP01_11f"]
    assert (cropped.subject, cropped.emotion) == ("sub02", "Other")
    assert [p.name for p in cropped.frames] == [f"reg_img{i}.jpg" for i in range(5, 9)]
    assert got["EP04_01"].subject == "sub03" and got["EP04_01"].frames[0].name == "img1.jpg"
    assert got["EP04_01"].frames[0].parent.parent.parent.name == "CASME2_RAW_selected"
    assert [p.name for p in got["EP08_03"].frames] == ["reg_img30.jpg", "reg_img31.jpg", "reg_img32.jpg"]
    assert all(p.is_file() for c in got.values() for p in c.frames)
    miss = warnings_about(caplog, "EP05_02")
    assert miss and "1 of 4 frames missing" in miss[0]


def test_casme2_missing_sheet(tmp_path):
    with pytest.raises(FileNotFoundError, match="CASME2-coding"):
        read_casme2(tmp_path)


# ---------------------------------------------------------------- SMIC-HS, folder

def test_read_smic(smic_root, caplog):
    caplog.set_level(logging.WARNING)
    for root in (smic_root, smic_root / "HS"):
        got = by_name(read_smic(root))
        assert sorted(got) == ["s1_ne_01", "s1_sur_01", "s2_po_03"]
        ne = got["s1_ne_01"]
        assert (ne.dataset, ne.subject, ne.emotion, ne.group) == ("smic", "s1", "Negative", "smic/s1")
        assert [p.name for p in ne.frames] == ["image8.bmp", "image9.bmp", "image10.bmp", "image11.bmp",
                                               "image100.bmp"]
        assert ne.apex == 2 and got["s1_sur_01"].apex == 1 and got["s2_po_03"].apex == 0
        assert got["s2_po_03"].emotion == "Positive" and got["s2_po_03"].subject == "s2"
    assert not caplog.records  # the middle-frame apex is SMIC's convention, not a warning
    with pytest.raises(FileNotFoundError, match="SMIC-HS"):
        read_smic(smic_root / "HS" / "s1" / "micro")


def test_read_folder(folder_root, caplog):
    caplog.set_level(logging.WARNING)
    got = by_name(read_folder(folder_root))
    assert sorted(got) == ["006_a", "007_b_long", "008_c", "loner"]
    a = got["006_a"]
    assert (a.dataset, a.subject, a.emotion) == ("folder", "006", "happiness")
    assert [p.name for p in a.frames] == ["f1.png", "f2.png", "f10.png"]
    assert a.apex == 2  # apex.txt names f10.png
    b = got["007_b_long"]
    assert (b.subject, b.emotion, b.apex) == ("007", "Surprise", 1)
    assert got["loner"].subject == "loner" and warnings_about(caplog, "loner")
    assert not warnings_about(caplog, "006_a")


def test_folder_bad_apex_file(folder_root, caplog):
    (folder_root / "contempt" / "008_c" / "apex.txt").write_text("nope.jpg")
    caplog.set_level(logging.WARNING)
    assert by_name(read_folder(folder_root))["008_c"].apex == 0
    assert warnings_about(caplog, "nope.jpg")


# ---------------------------------------------------------------- labels

def test_label_sets():
    from mer.models import CLASSES
    assert LABEL_SETS["seed6"] == list(CLASSES)
    assert LABEL_SETS["samm5"] == ["Anger", "Contempt", "Happiness", "Surprise", "Other"]
    assert LABEL_SETS["composite3"] == ["negative", "positive", "surprise"]
    assert set(READERS) == {"samm", "casme2", "smic", "folder"}


@pytest.mark.parametrize("dataset,emotion,label_set,expected", [
    ("samm", "Happiness", "seed6", "Happiness"), ("casme2", "Disgust", "seed6", "Disgust"),
    ("samm", "Contempt", "seed6", None), ("casme2", "Repression", "seed6", None), ("samm", "Other", "seed6", None),
    ("smic", "Surprise", "seed6", "Surprise"), ("smic", "Negative", "seed6", None),
    ("samm", "Contempt", "samm5", "Contempt"), ("samm", "Others", "samm5", "Other"),
    ("casme2", "Other", "samm5", "Other"), ("samm", "Disgust", "samm5", None), ("samm", "Fear", "samm5", None),
    ("samm", "Sadness", "samm5", None),
    ("samm", "Anger", "composite3", "negative"), ("samm", "Contempt", "composite3", "negative"),
    ("samm", "Fear", "composite3", "negative"), ("samm", "Sadness", "composite3", "negative"),
    ("samm", "Disgust", "composite3", "negative"), ("samm", "Happiness", "composite3", "positive"),
    ("samm", "Surprise", "composite3", "surprise"), ("samm", "Other", "composite3", None),
    ("casme2", "Repression", "composite3", "negative"), ("casme2", "Disgust", "composite3", "negative"),
    ("casme2", "Fear", "composite3", None), ("casme2", "Sadness", "composite3", None),
    ("casme2", "Happiness", "composite3", "positive"), ("casme2", "Other", "composite3", None),
    ("smic", "Negative", "composite3", "negative"), ("smic", "Positive", "composite3", "positive"),
    ("smic", "surprise", "composite3", "surprise"),
    ("folder", "happiness", "seed6", "Happiness"), ("folder", "POSITIVE", "composite3", "positive"),
    ("folder", "contempt", "seed6", None), ("folder", "contempt", None, "contempt"),
])
def test_map_label(dataset, emotion, label_set, expected):
    assert map_label(dataset, emotion, label_set) == expected


def test_map_label_errors():
    with pytest.raises(ValueError, match="label set"):
        map_label("samm", "Happiness", "seed7")
    with pytest.raises(ValueError, match="unknown dataset"):
        map_label("casme", "Happiness", "seed6")


# ---------------------------------------------------------------- load_dataset

def test_load_single(samm_root, caplog):
    caplog.set_level(logging.INFO, logger="training.datasets")
    clips = load_dataset("samm", str(samm_root))
    assert {c.clip: c.label for c in clips} == {"006_1_2": "Happiness", "007_6_1": "Surprise",
                                                "007_7_1": "Sadness"}
    info = [r.getMessage() for r in caplog.records if r.name == "training.datasets" and r.levelno == logging.INFO]
    assert len(info) == 1
    assert "kept 3" in info[0] and "dropped 3" in info[0] and "Other 2" in info[0] and "Contempt 1" in info[0]
    samm5 = load_dataset(["samm"], [samm_root], "samm5")
    assert sorted(c.label for c in samm5) == ["Contempt", "Happiness", "Other", "Other", "Surprise"]
    assert classes_of(samm5, "samm5") == LABEL_SETS["samm5"]


def test_load_multi_composite3(samm_root, casme2_root, folder_root):
    clips = load_dataset("samm,casme2", f"{samm_root},{casme2_root}", "composite3")
    got = {(c.dataset, c.clip): c.label for c in clips}
    assert got == {("samm", "006_1_2"): "positive", ("samm", "011_3_1"): "negative",
                   ("samm", "007_6_1"): "surprise", ("samm", "007_7_1"): "negative",
                   ("casme2", "EP02_01f"): "positive", ("casme2", "EP03_02"): "negative",
                   ("casme2", "EP04_01"): "surprise"}
    assert {c.group for c in clips} == {"samm/006", "samm/011", "samm/007", "casme2/sub01", "casme2/sub03"}
    # equal subject ids from different datasets stay different LOSO groups
    mixed = load_dataset(["samm", "folder"], [samm_root, folder_root], "seed6")
    both = {c.dataset: c for c in mixed if c.subject == "006"}
    assert set(both) == {"samm", "folder"} and both["samm"].group != both["folder"].group


def test_load_folder_own_classes(folder_root):
    clips = load_dataset("folder", folder_root, label_set=None)
    assert classes_of(clips) == ["Surprise", "contempt", "happiness"]
    assert {c.clip: c.label for c in clips}["008_c"] == "contempt"
    seed6 = load_dataset("folder", folder_root, "seed6")
    assert sorted(c.label for c in seed6) == ["Happiness", "Happiness", "Surprise"]
    assert classes_of(seed6) == ["Happiness", "Surprise"] and classes_of(seed6, "seed6") == LABEL_SETS["seed6"]


def test_composite_discovery(tmp_path, samm_root, casme2_root, smic_root, caplog):
    # samm_root etc. already live in tmp_path: tmp_path/SAMM_v2, tmp_path/CASME2, tmp_path/SMIC/HS
    caplog.set_level(logging.INFO, logger="training.datasets")
    assert discover_composite(tmp_path) == {"samm": samm_root, "casme2": casme2_root, "smic": smic_root / "HS"}
    clips = load_dataset("composite", tmp_path, "composite3")
    assert {c.dataset for c in clips} == {"samm", "casme2", "smic"}
    assert {c.label for c in clips if c.dataset == "smic"} == {"negative", "positive", "surprise"}
    found = [r.getMessage() for r in caplog.records if r.getMessage().startswith("composite under")]
    assert found and "SMIC-HS at" in found[0]


def test_composite_two_levels_deep_and_missing(tmp_path):
    (tmp_path / "data" / "samm").mkdir(parents=True)
    write_samm_sheet(tmp_path / "data" / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_ROWS[:1])
    with pytest.raises(FileNotFoundError) as e:
        discover_composite(tmp_path)
    msg = str(e.value)
    assert "SAMM at" in msg and str(tmp_path / "data" / "samm") in msg and "missing CASME II" in msg
    (tmp_path / "deeper" / "a" / "b").mkdir(parents=True)  # 3 levels down: not searched
    write_casme2_sheet(tmp_path / "deeper" / "a" / "b" / "CASME2-coding-1.xlsx", CASME2_ROWS[:1])
    with pytest.raises(FileNotFoundError, match="missing CASME II"):
        load_dataset("composite", tmp_path, "composite3")


def test_load_errors(samm_root, casme2_root, folder_root, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'sam'"):
        load_dataset("sam", samm_root)
    with pytest.raises(ValueError, match="label set 'seed7'"):
        load_dataset("samm", samm_root, "seed7")
    with pytest.raises(ValueError, match="2 dataset.*1 path"):
        load_dataset("samm,casme2", str(samm_root))
    with pytest.raises(ValueError, match="composite"):
        load_dataset("composite,samm", f"{tmp_path},{samm_root}")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("samm", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="CASME2-coding"):
        load_dataset("casme2", samm_root)  # a root without the sheet
    frames(tmp_path / "only_neutral" / "neutral" / "001_a", ["1.jpg", "2.jpg"])
    assert len(read_folder(tmp_path / "only_neutral")) == 1
    with pytest.raises(ValueError, match="no clip left.*composite3.*neutral"):
        load_dataset("folder", tmp_path / "only_neutral", "composite3")
