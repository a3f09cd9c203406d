"""Long-video readers (SAMM-LV, CAS(ME)^2, synth_long output) on tiny fixtures built here: real
.xlsx sheets (openpyxl) and real JPEG frames."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from training.datasets.longvideo import read_casme2_lv, read_long, read_samm_lv

SAMM_LV_COLS = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
                "Action Units", "Notes"]


def frames(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        assert cv2.imwrite(str(folder / n), np.full((8, 8), (7 * i) % 256, np.uint8))


@pytest.fixture
def samm_lv(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.cell(row=1, column=1, value="SAMM Long Videos")            # preamble, header on row 10
    ws.cell(row=3, column=1, value="Micro and macro movements")
    rows = [[6, "006_1_1", 1, 5, 7, 9, 5, "Micro - 1/2", "R12", ""],
            [6, "006_1_2", 1, 20, "-", 40, 21, "Macro", "4+7", ""],
            [6, "006_1_3", 1, 50, 55, 90, 41, "Macro", "12", "offset past the last frame"],
            [7, "007_2_1", 2, 3, 4, 5, 3, "Micro - 1/2", "1", "video folder missing"]]
    for j, c in enumerate(SAMM_LV_COLS, 1):
        ws.cell(row=10, column=j, value=c)
    for i, r in enumerate(rows):
        for j, v in enumerate(r, 1):
            ws.cell(row=11 + i, column=j, value=v)
    wb.save(tmp_path / "SAMM_LongVideos_V2_Release.xlsx")
    frames(tmp_path / "SAMM_longvideos" / "006_1", [f"006_1_{i:05d}.jpg" for i in range(1, 61)])
    return tmp_path


def test_samm_lv_reader(samm_lv, caplog):
    with caplog.at_level(logging.WARNING):
        videos = read_samm_lv(samm_lv)
    assert [v.name for v in videos] == ["006_1"]
    v = videos[0]
    assert (v.subject, v.group, v.fps, len(v.frames)) == ("006", "samm-lv/006", 200.0, 60)
    assert v.frames[0].name == "006_1_00001.jpg" and v.video is None
    e = v.expressions
    assert [(x.type, x.onset, x.apex, x.offset) for x in e] == [("micro", 4, 6, 8), ("macro", 19, 29, 39)]
    assert e[0].aus == "R12"
    text = caplog.text
    assert "007_2" in text and "006_1_3" in text and "006_1_2" in text   # each skip / fix is said


@pytest.fixture
def casme2_lv(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in [[1, "disgust1_1", 10, 12, 15, "4+7", "disgust", "micro-expression", "disgust"],
              [1, "disgust1_2", 30, 40, 0, "", "others", "macro-expression", ""],
              [2, "anger1_1", 3, 4, 6, "4", "anger", "macro-expression", ""]]:
        ws.append(r)
    subj = wb.create_sheet("naming rule1")
    for r in [["a", 15, 1], ["b", 16, 2]]:
        subj.append(r)
    names = wb.create_sheet("naming rule2")
    for r in [["0101", "disgust1"], ["0401", "anger1"]]:
        names.append(r)
    wb.save(tmp_path / "CAS(ME)^2code_final.xlsx")
    frames(tmp_path / "rawpic" / "s15" / "15_0101disgustingteeth", [f"img{i}.jpg" for i in range(1, 51)])
    return tmp_path


def test_casme2_lv_reader(casme2_lv, caplog):
    with caplog.at_level(logging.WARNING):
        videos = read_long("casme2-lv", casme2_lv)
    assert [(v.subject, v.name, v.fps) for v in videos] == [("s15", "15_0101disgustingteeth", 30.0)]
    e = videos[0].expressions
    assert [(x.type, x.onset, x.apex, x.offset, x.emotion) for x in e] == [
        ("micro", 9, 11, 14, "disgust"), ("macro", 29, 39, 39, "others")]      # offset 0 -> the apex
    assert "anger1_1" in caplog.text and "offset" in caplog.text


def test_long_readers_refuse_missing_sheets(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAMM_LongVideos"):
        read_samm_lv(tmp_path)
    with pytest.raises(FileNotFoundError, match="code_final"):
        read_casme2_lv(tmp_path)
    with pytest.raises(FileNotFoundError, match="truth.csv"):
        read_long("synth", tmp_path)
    with pytest.raises(ValueError, match="unknown long-video dataset"):
        read_long("smic-lv", tmp_path)
