"""Dataset annotation formats: fixture files written in each released format, with tiny real
videos; labels, class names, paths, error messages, missing videos, specs, the converter."""

from __future__ import annotations

import json
import logging
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from motionmae.cli import main
from motionmae.config import DataConfig
from motionmae.data.dataset import VideoDataset
from motionmae.data.formats import (
    AnnotationError,
    DatasetSpecError,
    MissingVideosError,
    parse_spec,
    read_dataset,
)
from motionmae.data.lists import ListFormatError, VideoEntry, read_video_list, write_video_list
from motionmae.data.prepare import write_list
from motionmae.data.video_reader import probe_video
from motionmae.data.video_writer import write_video

FRAMES = 8


def _frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (FRAMES, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("mp4") / "v.mp4"
    write_video(path, _frames(), fps=8)
    return path.read_bytes()


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A VP9 WebM, the codec and container Something-Something v2 ships."""
    path = tmp_path_factory.mktemp("webm") / "v.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=Fraction(12))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for image in _frames(1):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def _put(path: Path, payload: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(payload)
    return path


# -- Something-Something v2 ----------------------------------------------------------------------

SSV2_LABELS = {
    "Approaching something with your camera": "0",
    "Something falling like a feather or paper": "2",
    "Putting something on a surface": "1",
}
SSV2_TRAIN = [
    {"id": "78687", "label": "putting a cup on a table", "template":
     "Putting [something] on a surface", "placeholders": ["a cup", "a table"]},
    {"id": "42326", "label": "a leaf falling like a feather or paper", "template":
     "[Something] falling like a feather or paper", "placeholders": ["a leaf"]},
    {"id": "3", "label": "approaching box with your camera", "template":
     "Approaching [something] with your camera", "placeholders": ["box"]},
]


@pytest.fixture
def ssv2(tmp_path: Path, webm: bytes) -> Path:
    """The released layout: labels/*.json beside 20bn-something-something-v2/<id>.webm."""
    labels = tmp_path / "labels"
    _put(labels / "something-something-v2-labels.json", json.dumps(SSV2_LABELS, indent=1))
    _put(labels / "something-something-v2-train.json", json.dumps(SSV2_TRAIN, indent=1))
    _put(labels / "something-something-v2-test.json", json.dumps([{"id": "9"}], indent=1))
    for video_id in ("78687", "42326", "3", "9"):
        _put(tmp_path / "20bn-something-something-v2" / f"{video_id}.webm", webm)
    return labels


def test_ssv2_labels_follow_label_file_ids_and_template_normalisation(ssv2: Path) -> None:
    videos = read_dataset(f"ssv2:{ssv2 / 'something-something-v2-train.json'}")
    assert videos.classes == ["Approaching something with your camera",
                              "Putting something on a surface",
                              "Something falling like a feather or paper"]
    assert [e.label for e in videos.entries] == [1, 2, 0]
    folder = ssv2.parent / "20bn-something-something-v2"
    assert [e.path for e in videos.entries] == [folder / "78687.webm", folder / "42326.webm",
                                                folder / "3.webm"]


def test_ssv2_test_list_is_unlabelled_and_the_webm_decodes(ssv2: Path) -> None:
    videos = read_video_list(f"ssv2:{ssv2 / 'something-something-v2-test.json'}")
    assert videos.classes is None and [e.label for e in videos.entries] == [None]
    dataset = VideoDataset(videos, DataConfig(frames=4, stride=2, size=16), train=False)
    sample = dataset[0]
    assert sample["clip"].shape == (3, 4, 16, 16) and int(sample["label"]) == -1


def test_ssv2_template_not_in_labels_names_file_and_line(ssv2: Path) -> None:
    broken = [*SSV2_TRAIN, {"id": "7", "template": "Spinning [something] that quickly stops"}]
    train = _put(ssv2 / "something-something-v2-train.json", json.dumps(broken, indent=1))
    lines = train.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if '"id": "7"' in text) - 1  # its "{"
    with pytest.raises(AnnotationError, match=rf"train\.json:{line}: video 7: template "
                       r"'Spinning \[something\] that quickly stops' \(class 'Spinning "
                       r"something that quickly stops'\) is not in the labels file"):
        read_dataset(f"ssv2:{train}")


def test_ssv2_malformed_files_name_file_and_line(ssv2: Path) -> None:
    labels = ssv2 / "something-something-v2-labels.json"
    _put(labels, '{\n "Approaching something": "0",\n "Pushing something": "one"\n}')
    with pytest.raises(AnnotationError, match=r"labels\.json:3: class 'Pushing something': id "
                       r"'one' is not an integer"):
        read_dataset(f"ssv2:{ssv2 / 'something-something-v2-train.json'}")
    _put(labels, '{\n "a": "0",\n "b": "0"\n}')
    with pytest.raises(AnnotationError, match=r"labels\.json:3: class id 0 repeats line 2"):
        read_dataset(f"ssv2:{ssv2 / 'something-something-v2-train.json'}")
    train = _put(ssv2 / "something-something-v2-train.json", '[\n {"id": "1"},\n {"id": 2,}\n]')
    with pytest.raises(AnnotationError, match=r"train\.json:3: invalid JSON"):
        read_dataset(f"ssv2:{train}")
    _put(train, '[\n {"id": "1"},\n {"label": "x"}\n]')
    with pytest.raises(AnnotationError, match=r"train\.json:3: entry has no video 'id'"):
        read_dataset(f"ssv2:{train}")


def test_ssv2_reencoded_to_mp4_is_found_by_stem(ssv2: Path, mp4: bytes) -> None:
    folder = ssv2.parent / "20bn-something-something-v2"
    (folder / "3.webm").unlink()
    _put(folder / "3.mp4", mp4)
    videos = read_dataset(f"ssv2:{ssv2 / 'something-something-v2-train.json'}")
    assert videos.entries[2].path == folder / "3.mp4"


# -- Kinetics ------------------------------------------------------------------------------------

KINETICS_CSV = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,0347ZoDXyP0,14,24,train,0
air drumming,-0Ow7NsBEpA,0,10,train,0
"passing American football (in game)",3Ub3Ff7yIb4,125,135,train,1
abseiling,--33Lscn6sk,4,14,train,0
"""


def _kinetics(root: Path, mp4: bytes, per_class: bool) -> Path:
    csv_path = _put(root / "annotations" / "train.csv", KINETICS_CSV)
    clips = [("abseiling", "0347ZoDXyP0_000014_000024.mp4"),
             ("air_drumming", "-0Ow7NsBEpA_000000_000010.mp4"),
             ("passing American football (in game)", "3Ub3Ff7yIb4_000125_000135.mp4"),
             ("abseiling", "--33Lscn6sk_000004_000014.mp4")]
    for folder, name in clips:
        _put(root / "train" / (folder if per_class else "") / name, mp4)
    return csv_path


def test_kinetics_flat_layout_names_and_sorted_classes(tmp_path: Path, mp4: bytes) -> None:
    csv_path = _kinetics(tmp_path, mp4, per_class=False)
    videos = read_dataset(f"kinetics:{csv_path}")  # videos: the folder named like the csv
    assert videos.classes == ["abseiling", "air drumming", "passing American football (in game)"]
    assert [e.label for e in videos.entries] == [0, 1, 2, 0]
    assert [e.path.name for e in videos.entries] == [
        "0347ZoDXyP0_000014_000024.mp4", "-0Ow7NsBEpA_000000_000010.mp4",
        "3Ub3Ff7yIb4_000125_000135.mp4", "--33Lscn6sk_000004_000014.mp4"]
    assert all(e.path.parent == tmp_path / "train" for e in videos.entries)


def test_kinetics_per_class_folders_with_spaces_or_underscores(tmp_path: Path,
                                                               mp4: bytes) -> None:
    csv_path = _kinetics(tmp_path, mp4, per_class=True)
    videos = read_dataset(f"kinetics:{csv_path},videos={tmp_path / 'train'}")
    assert [e.path.parent.name for e in videos.entries] == [
        "abseiling", "air_drumming", "passing American football (in game)", "abseiling"]


def test_kinetics_missing_videos_raise_or_are_skipped(tmp_path: Path, mp4: bytes,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    csv_path = _kinetics(tmp_path, mp4, per_class=True)
    gone = tmp_path / "train" / "air_drumming" / "-0Ow7NsBEpA_000000_000010.mp4"
    gone.unlink()
    with pytest.raises(MissingVideosError, match=r"1 of 4 annotated videos are missing \("
                       + str(gone).replace("(", r"\(").replace(")", r"\)")
                       + r"\); add ',missing=skip'") as raised:
        read_dataset(f"kinetics:{csv_path}")
    assert raised.value.missing == [gone] and raised.value.total == 4
    with caplog.at_level(logging.WARNING):
        videos = read_dataset(f"kinetics:{csv_path},missing=skip")
    assert [e.label for e in videos.entries] == [0, 2, 0]
    assert videos.classes is not None and len(videos.classes) == 3  # ids keep every class
    assert "1 of 4 annotated videos are missing" in caplog.text
    shutil.rmtree(tmp_path / "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(MissingVideosError, match=r"4 of 4 .* none found; is the video folder"):
        read_dataset(f"kinetics:{csv_path},missing=skip")


def test_kinetics_reports_at_most_five_missing_paths(tmp_path: Path) -> None:
    rows = "".join(f"walking,id{i:02d},0,10,val\n" for i in range(8))
    csv_path = _put(tmp_path / "val.csv", "label,youtube_id,time_start,time_end,split\n" + rows)
    (tmp_path / "val").mkdir()
    with pytest.raises(MissingVideosError) as raised:
        read_dataset(f"kinetics:{csv_path}")
    message = str(raised.value)
    assert "8 of 8" in message and "id04_000000_000010.mp4, ..." in message
    assert "id05" not in message and len(raised.value.missing) == 8


def test_kinetics_test_file_without_labels_and_class_file(tmp_path: Path, mp4: bytes) -> None:
    csv_path = _put(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\n"
                    "abc,3,13,test\n")
    _put(tmp_path / "test" / "abc_000003_000013.mp4", mp4)
    videos = read_dataset(f"kinetics:{csv_path}")
    assert [e.label for e in videos.entries] == [None] and videos.classes is None
    # A subset keeps the full dataset's class ids through classes=FILE.
    subset = _put(tmp_path / "sub.csv", "label,youtube_id,time_start,time_end,split\n"
                  "zumba,abc,3,13,train\n")
    names = _put(tmp_path / "classes.txt", "abseiling\nzumba\n")
    videos = read_dataset(f"kinetics:{subset},videos={tmp_path / 'test'},classes={names}")
    assert videos.classes == ["abseiling", "zumba"] and videos.entries[0].label == 1


def test_kinetics_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    csv_path = _put(tmp_path / "train.csv", KINETICS_CSV.replace(",4,14,", ",4s,14,"))
    (tmp_path / "train").mkdir()
    with pytest.raises(AnnotationError, match=r"train\.csv:5: time_start '4s' is not a number"):
        read_dataset(f"kinetics:{csv_path}")
    _put(csv_path, "label,youtube_id,start,end\na,b,1,2\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:1: CSV header lacks time_start, "
                       "time_end"):
        read_dataset(f"kinetics:{csv_path}")


# -- UCF101 --------------------------------------------------------------------------------------


@pytest.fixture
def ucf101(tmp_path: Path, mp4: bytes) -> Path:
    """ucfTrainTestlist/ beside UCF-101/<class>/<video>.avi, CRLF lines as released."""
    lists = tmp_path / "ucfTrainTestlist"
    _put(lists / "classInd.txt", "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n")
    _put(lists / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
         "HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\nYoYo/v_YoYo_g09_c02.avi 3\r\n")
    _put(lists / "testlist01.txt", "YoYo/v_YoYo_g01_c01.avi\r\n"
         "HandStandPushups/v_HandStandPushups_g01_c01.avi\r\n")
    for relative in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                     "HandstandPushups/v_HandStandPushups_g08_c01.avi",
                     "YoYo/v_YoYo_g09_c02.avi", "YoYo/v_YoYo_g01_c01.avi",
                     "HandStandPushups/v_HandStandPushups_g01_c01.avi"):
        _put(tmp_path / "UCF-101" / relative, mp4)
    return lists


def test_ucf101_train_and_test_lists(ucf101: Path) -> None:
    train = read_dataset(f"ucf101:{ucf101 / 'trainlist01.txt'}")
    assert train.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert [e.label for e in train.entries] == [0, 1, 2]
    assert train.entries[1].path == (ucf101.parent / "UCF-101" / "HandstandPushups"
                                     / "v_HandStandPushups_g08_c01.avi")
    test = read_dataset(f"ucf101:{ucf101 / 'testlist01.txt'}")
    # Labels from the class folder; 'HandStandPushups' matches 'HandstandPushups' by case.
    assert [e.label for e in test.entries] == [2, 1]


def test_ucf101_errors_name_file_and_line(ucf101: Path) -> None:
    _put(ucf101 / "trainlist02.txt", "YoYo/v_YoYo_g09_c02.avi 3\nYoYo/v_YoYo_g01_c01.avi 1\n")
    with pytest.raises(AnnotationError, match=r"trainlist02\.txt:2: label 1 \(ApplyEyeMakeup\) "
                       r"contradicts the class folder 'YoYo' \(id 3 in .*classInd\.txt\)"):
        read_dataset(f"ucf101:{ucf101 / 'trainlist02.txt'}")
    _put(ucf101 / "testlist02.txt", "YoYo/v_YoYo_g01_c01.avi\nJuggling/v_Juggling_g01.avi\n")
    with pytest.raises(AnnotationError, match=r"testlist02\.txt:2: no label and the folder "
                       "'Juggling' is not a class"):
        read_dataset(f"ucf101:{ucf101 / 'testlist02.txt'}")
    _put(ucf101 / "classInd.txt", "1 ApplyEyeMakeup\n3 YoYo\n")
    with pytest.raises(AnnotationError, match=r"classInd\.txt: class ids must run from 1 to 2 "
                       "without gaps; 2 is missing"):
        read_dataset(f"ucf101:{ucf101 / 'trainlist01.txt'}")
    (ucf101 / "classInd.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classInd\.txt: annotation file not found"):
        read_dataset(f"ucf101:{ucf101 / 'trainlist01.txt'}")


# -- HMDB51 --------------------------------------------------------------------------------------


@pytest.fixture
def hmdb51(tmp_path: Path, mp4: bytes) -> Path:
    splits = tmp_path / "testTrainMulti_7030_splits"
    # Released lines end with a space; ids: 1 train, 2 test, 0 unused.
    _put(splits / "brush_hair_test_split1.txt", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
         "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi 2 \n"
         "brushing_hair_2_brush_hair_u_nm_np2_le_goo_0.avi 0 \n")
    _put(splits / "brush_hair_test_split2.txt", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    _put(splits / "cartwheel_test_split1.txt", "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi 1 \n")
    _put(splits / "cartwheel_test_split2.txt", "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi 2 \n")
    for relative in ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
                     "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
                     "cartwheel/Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi"):
        _put(tmp_path / "hmdb51_org" / relative, mp4)
    return splits


def test_hmdb51_splits_and_subsets(hmdb51: Path) -> None:
    train = read_dataset(f"hmdb51:{hmdb51}")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [(e.path.parent.name, e.path.name, e.label) for e in train.entries] == [
        ("brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0),
        ("cartwheel", "Acrobacias_cartwheel_f_cm_np1_ri_bad_0.avi", 1)]
    test = read_dataset(f"hmdb51:{hmdb51},split=1,subset=test")
    assert [e.path.name for e in test.entries] == [
        "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi"]
    split2 = read_dataset(f"hmdb51:{hmdb51},split=2,subset=test")
    assert [e.label for e in split2.entries] == [0, 1]
    assert parse_spec(f"hmdb51:{hmdb51},subset=test,split=2").name == (
        "testTrainMulti_7030_splits_split2_test")


def test_hmdb51_errors(hmdb51: Path) -> None:
    _put(hmdb51 / "cartwheel_test_split3.txt", "a.avi 1\nb.avi 3\n")
    with pytest.raises(AnnotationError, match=r"cartwheel_test_split3\.txt:2: expected "
                       r"'<video> <0\|1\|2>', got 'b.avi 3'"):
        read_dataset(f"hmdb51:{hmdb51},split=3")
    with pytest.raises(DatasetSpecError, match=r"split='4' must be one of 1, 2, 3"):
        read_dataset(f"hmdb51:{hmdb51},split=4")
    with pytest.raises(FileNotFoundError, match="wants the folder of its split files"):
        read_dataset(f"hmdb51:{hmdb51 / 'cartwheel_test_split1.txt'}")


# -- FineGym -------------------------------------------------------------------------------------

GYM99_CATEGORIES = (
    "Clabel:   0; set:  1; Glabel:   1; (VT) round-off, flic-flac with 0.5 turn on\n"
    "Clabel:   1; set: 21; Glabel:  67; (FX) switch leap with 0.5 turn  \n"
    "Clabel:   2; set: 41; Glabel: 398; (UB) pike sole circle backward to handstand\n")
GYM_CLIPS = ("0LtLS9wROrk_E_002407_002435_A_0003_0005", "zrCbTgvQB-c_E_000420_000501_A_0012_0013")


@pytest.fixture
def finegym(tmp_path: Path, mp4: bytes) -> Path:
    annotations = tmp_path / "annotations"
    _put(annotations / "gym99_categories.txt", GYM99_CATEGORIES)
    train = _put(annotations / "gym99_train_element_v1.1.txt",
                 f"{GYM_CLIPS[0]} 2\n{GYM_CLIPS[1]} 0\n")
    for clip in GYM_CLIPS:
        _put(tmp_path / "subactions" / f"{clip}.mp4", mp4)
    return train


def test_finegym_labels_and_category_names(finegym: Path) -> None:
    videos = read_dataset(f"finegym:{finegym}")
    assert videos.classes == ["(VT) round-off, flic-flac with 0.5 turn on",
                              "(FX) switch leap with 0.5 turn",
                              "(UB) pike sole circle backward to handstand"]
    assert [(e.path.stem, e.label) for e in videos.entries] == [(GYM_CLIPS[0], 2),
                                                                (GYM_CLIPS[1], 0)]


def test_finegym_errors_and_no_category_file(finegym: Path) -> None:
    _put(finegym, f"{GYM_CLIPS[0]} 2\n{GYM_CLIPS[1]} 3\n")
    with pytest.raises(AnnotationError, match=r"gym99_train_element_v1\.1\.txt:2: label 3 is "
                       r"outside 0\.\.2 \(.*gym99_categories\.txt\)"):
        read_dataset(f"finegym:{finegym}")
    (finegym.parent / "gym99_categories.txt").unlink()
    videos = read_dataset(f"finegym:{finegym}")
    assert videos.classes is None and [e.label for e in videos.entries] == [2, 3]
    _put(finegym.parent / "gym99_categories.txt", "Clabel: 0; set: 1; (VT) vault\n")
    with pytest.raises(AnnotationError, match=r"gym99_categories\.txt:1: expected 'Clabel: "):
        read_dataset(f"finegym:{finegym}")


# -- Diving48 ------------------------------------------------------------------------------------


@pytest.fixture
def diving48(tmp_path: Path, mp4: bytes) -> Path:
    _put(tmp_path / "Diving48_vocab.json", json.dumps(
        [["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"]]))
    train = _put(tmp_path / "Diving48_V2_train.json", json.dumps([
        {"vid_name": "-mmq0PT-u8k_00155", "label": 1, "start_frame": 0, "end_frame": 76},
        {"vid_name": "_8Vy3dlHg2w_00000", "label": 0, "start_frame": 0, "end_frame": 90},
    ], indent=2))
    for name in ("-mmq0PT-u8k_00155", "_8Vy3dlHg2w_00000"):
        _put(tmp_path / "rgb" / f"{name}.mp4", mp4)
    return train


def test_diving48_labels_and_vocabulary(diving48: Path) -> None:
    videos = read_dataset(f"diving48:{diving48}")
    assert videos.classes == ["Back 15som 05Twis FREE", "Forward 25som NoTwis PIKE"]
    assert [(e.path, e.label) for e in videos.entries] == [
        (diving48.parent / "rgb" / "-mmq0PT-u8k_00155.mp4", 1),
        (diving48.parent / "rgb" / "_8Vy3dlHg2w_00000.mp4", 0)]


def test_diving48_errors_name_file_and_line(diving48: Path) -> None:
    items = json.loads(diving48.read_text())
    items[1]["label"] = "0"
    _put(diving48, json.dumps(items, indent=2))
    with pytest.raises(AnnotationError, match=r"Diving48_V2_train\.json:8: video "
                       r"_8Vy3dlHg2w_00000: 'label' '0' is not an integer"):
        read_dataset(f"diving48:{diving48}")
    items[1]["label"] = 2
    _put(diving48, json.dumps(items, indent=2))
    with pytest.raises(AnnotationError, match=r"json:8: video _8Vy3dlHg2w_00000: label 2 is "
                       r"outside 0\.\.1"):
        read_dataset(f"diving48:{diving48}")


# -- specs ---------------------------------------------------------------------------------------


def test_spec_errors(tmp_path: Path, diving48: Path) -> None:
    with pytest.raises(DatasetSpecError, match="unknown dataset format 'kinetics400'; known: "
                       "diving48, finegym, hmdb51, kinetics, ssv2, ucf101"):
        read_video_list("kinetics400:train.csv")
    with pytest.raises(DatasetSpecError, match="unknown option 'vidoes' for diving48; known: "
                       "missing, videos, vocab"):
        parse_spec(f"diving48:{diving48},vidoes=x")
    with pytest.raises(DatasetSpecError, match="missing='ignore' must be one of raise, skip"):
        parse_spec(f"diving48:{diving48},missing=ignore")
    with pytest.raises(DatasetSpecError, match="option 'rgb' is not key=value"):
        parse_spec(f"diving48:{diving48},rgb")
    with pytest.raises(FileNotFoundError, match=r"video folder .*nowhere does not exist"):
        read_dataset(f"diving48:{diving48},videos={tmp_path / 'nowhere'}")
    shutil.rmtree(tmp_path / "rgb")
    with pytest.raises(FileNotFoundError, match="no video folder given and none of the usual "
                       r"ones exists \(.*rgb.*\); add ',videos=DIR'"):
        read_dataset(f"diving48:{diving48}")
    with pytest.raises(FileNotFoundError, match=r"annotation file .*absent\.json not found"):
        read_dataset(f"diving48:{tmp_path / 'absent.json'}")


def test_existing_file_with_colon_is_a_list_not_a_spec(tmp_path: Path, mp4: bytes) -> None:
    _put(tmp_path / "clip.mp4", mp4)
    odd = _put(tmp_path / "ucf101:list.txt", "clip.mp4 0\n")
    assert read_video_list(odd).entries == [VideoEntry(tmp_path / "clip.mp4", 0)]


# -- converter and class files ---------------------------------------------------------------------


def test_converter_round_trip_keeps_ids_and_class_names(diving48: Path, tmp_path: Path) -> None:
    spec = f"diving48:{diving48}"
    path = write_list(spec, tmp_path / "lists")
    assert path == tmp_path / "lists" / "Diving48_V2_train.txt"
    # Integer labels (the vocabulary is not in sorted order) + class names beside the list.
    assert path.read_text().split("\n")[0].endswith("-mmq0PT-u8k_00155.mp4 1")
    assert (tmp_path / "lists" / "Diving48_V2_train.classes.txt").read_text().splitlines() == [
        "Back 15som 05Twis FREE", "Forward 25som NoTwis PIKE"]
    assert read_video_list(path) == read_dataset(spec)


def test_class_file_must_cover_the_labels(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    write_video_list(path, [VideoEntry(tmp_path / "a.mp4", 2)], ["x", "y", "z"], class_file=True)
    assert read_video_list(path).classes == ["x", "y", "z"]
    _put(tmp_path / "l.classes.txt", "x\ny\n")
    with pytest.raises(ListFormatError, match=r"l\.classes\.txt: 2 class names, but the list "
                       "beside it has label 2"):
        read_video_list(path)
    write_video_list(path, [VideoEntry(tmp_path / "a.mp4", 2)])  # a stale class file goes
    assert not (tmp_path / "l.classes.txt").exists()


# -- the commands on a spec ----------------------------------------------------------------------


def test_pretrain_and_probe_read_specs_directly(ucf101: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", f"ucf101:{ucf101 / 'trainlist01.txt'}", "--out",
                 str(run), "--frames", "4", "--size", "32", "--steps", "1", "--batch-size", "2",
                 "--set", "model.depth=1", "--set", "model.decoder_depth=1",
                 "--set", "data.workers=0"]) == 0
    assert main(["probe", "--checkpoint", str(run), "--train",
                 f"ucf101:{ucf101 / 'trainlist01.txt'}", "--val",
                 f"ucf101:{ucf101 / 'testlist01.txt'}", "--kind", "knn", "--workers", "0"]) == 0
    assert "knn probe: top-1" in capsys.readouterr().out
    assert main(["features", "--checkpoint", str(run), "--data", "ucf101:nowhere.txt",
                 "--out", str(tmp_path / "f.npz")]) == 3  # data error (motionmae.errors)
    assert "annotation file nowhere.txt not found" in capsys.readouterr().err
    assert probe_video(ucf101.parent / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").num_frames == 8
