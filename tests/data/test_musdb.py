import zipfile

import numpy as np
import pytest
import yaml

from musicsep import MusicsepError
from musicsep.data.audio import probe
from musicsep.data.musdb import VALID_TRACKS, Dataset, Track, assign_splits, scan, slugify, unique_slugs


@pytest.mark.parametrize("name, slug", [
    ("Juliet's Rescue - Heartbeats", "juliets_rescue_heartbeats"),
    ("James Elder & Mark M Thompson - The English Actor", "james_elder_mark_m_thompson_the_english_actor"),
    ("The Easton Ellises (Baumi) - SDRNR", "the_easton_ellises_baumi_sdrnr"),
    ("M.E.R.C. Music - Knockout", "m_e_r_c_music_knockout"),
    ("Zoë Café - Über", "zoe_cafe_uber"),
])
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_unique_slugs():
    assert unique_slugs(["A b", "A-b", "a B", "c"]) == ["a_b", "a_b_2", "a_b_3", "c"]


def test_valid_tracks_match_musdb():
    import importlib.resources

    text = (importlib.resources.files("musdb") / "configs" / "mus.yaml").read_text()
    assert set(VALID_TRACKS) == set(yaml.safe_load(text)["validation_tracks"])
    assert len(VALID_TRACKS) == 14


def test_scan_folder(real_musdb, example_stem):
    dataset, tracks = scan(real_musdb)
    assert (dataset.kind, dataset.is_zip) == ("stems", False)
    by_name = {t.name: t for t in tracks}
    assert set(by_name) == {"Actions - One Minute Smile", "Juliet's Rescue - Heartbeats",
                            "The Easton Ellises (Baumi) - SDRNR"}
    # the official validation track is recognised by name
    assert by_name["Actions - One Minute Smile"].split == "valid"
    assert by_name["Juliet's Rescue - Heartbeats"].split == "train"
    assert by_name["The Easton Ellises (Baumi) - SDRNR"].split == "test"
    # the header's duration agrees with ffprobe's
    assert by_name["Juliet's Rescue - Heartbeats"].duration == pytest.approx(probe(example_stem)[0].duration, abs=0.05)


def test_scan_zip_with_top_folder(real_musdb, tmp_path):
    archive = tmp_path / "musdb18.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(real_musdb.rglob("*.mp4")):
            zf.write(path, "musdb18/" + path.relative_to(real_musdb).as_posix())
    dataset, tracks = scan(archive)
    assert (dataset.kind, dataset.is_zip, dataset.prefix) == ("stems", True, "musdb18/")
    assert {t.member for t in tracks} == {p.relative_to(real_musdb).as_posix() for p in real_musdb.rglob("*.mp4")}
    assert all(np.isfinite(t.duration) for t in tracks)


def test_scan_hq_folder(tmp_path):
    for name in ["A - B", "C & D - E (F)"]:
        (tmp_path / "train" / name).mkdir(parents=True)
        for stream in ["mixture", "drums", "bass", "other", "vocals"]:
            import soundfile
            soundfile.write(tmp_path / "train" / name / f"{stream}.wav", np.zeros((4410, 2)), 44100)
    dataset, tracks = scan(tmp_path, subsets=["train"])
    assert dataset.kind == "hq"
    assert [t.member for t in tracks] == ["train/A - B", "train/C & D - E (F)"]
    assert tracks[0].duration == pytest.approx(0.1)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(MusicsepError, match=f"{tmp_path}/nope.zip: dataset path does not exist"):
        Dataset.open(tmp_path / "nope.zip")


def test_not_musdb_layout(tmp_path):
    (tmp_path / "folder" / "songs").mkdir(parents=True)
    (tmp_path / "folder" / "songs" / "a.mp3").write_bytes(b"x")
    with pytest.raises(MusicsepError, match="folder: not a MUSDB18 layout"):
        Dataset.open(tmp_path / "folder")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("train/readme.txt", "hello")
    with pytest.raises(MusicsepError, match="other.zip: not a MUSDB18 layout"):
        Dataset.open(tmp_path / "other.zip")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(MusicsepError, match="file.txt: neither a folder nor a zip"):
        Dataset.open(tmp_path / "file.txt")


def _tracks(n_train, names=None):
    names = names or [f"Artist {i} - Song" for i in range(n_train)]
    return [Track(slugify(n), n, "train", "train", f"train/{n}") for n in names] + \
        [Track("t", "T - T", "test", "test", "test/T - T")]


def test_seeded_split_is_deterministic_and_sized():
    a = assign_splits(_tracks(20), 0.15, seed=3)
    b = assign_splits(_tracks(20), 0.15, seed=3)
    c = assign_splits(_tracks(20), 0.15, seed=4)
    valid = [t.name for t in a if t.split == "valid"]
    assert len(valid) == 3
    assert valid == [t.name for t in b if t.split == "valid"]
    assert valid != [t.name for t in c if t.split == "valid"]
    assert a[-1].split == "test"
    # at least one validation track as soon as there are two training tracks
    assert [t.split for t in assign_splits(_tracks(2), 0.15, 0)].count("valid") == 1
    assert [t.split for t in assign_splits(_tracks(1), 0.15, 0)].count("valid") == 0


def test_official_split_wins_when_names_match():
    tracks = assign_splits(_tracks(0, names=list(VALID_TRACKS) + ["X - Y", "Z - W"]), 0.5, 0)
    assert {t.name for t in tracks if t.split == "valid"} == set(VALID_TRACKS)
