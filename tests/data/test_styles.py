"""The embedded styles: the 4-track layout by register, and the ``styles`` build labelled per file.

The layout tests build small music21 scores by hand, so which parts are kept, in which order,
and what a chord leaves behind are known answers. The build test converts a few files of each
style (cached after the first run) and checks the labels and the manifest's per-style counts.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import symusic

from musicgan.data import corpus

TPQ_CHECK = 480  # only used to express expected times in quarters


def _part(name: str, events, ts: str = "4/4"):
    """A music21 part of quarter notes; an event is a pitch name, a list (a chord), or (pitch, quarters)."""
    from music21 import chord, meter, note, stream

    p = stream.Part()
    p.partName, p.id = name, name
    p.append(meter.TimeSignature(ts))
    for e in events:
        pitch, quarters = e if isinstance(e, tuple) else (e, 1.0)
        p.append(chord.Chord(pitch, quarterLength=quarters) if isinstance(pitch, list)
                 else note.Note(pitch, quarterLength=quarters))
    return p


def _score(parts):
    from music21 import stream

    s = stream.Score()
    for name, events in parts:
        s.insert(0, _part(name, events))
    return s


def _tracks(data: bytes) -> dict[str, list[tuple[float, float, int]]]:
    """MIDI bytes -> {track name: [(start quarters, length quarters, pitch), ...]} in time order."""
    sc = symusic.Score.from_midi(data)
    tpq = sc.ticks_per_quarter
    out = {}
    for t in sc.tracks:
        n = t.notes.numpy()
        order = np.argsort(n["time"], kind="stable")
        out[t.name] = [(n["time"][i] / tpq, n["duration"][i] / tpq, int(n["pitch"][i])) for i in order]
    return out


# ---------------------------------------------------------------------------------------------
# the rule itself


def test_register_order_keeps_the_outer_parts_and_the_inner_ones_nearest_the_middle():
    # four parts: all of them, highest first, whatever the score order
    assert corpus.register_order([48.0, 72.0, 55.0, 64.0]) == [1, 3, 2, 0]
    # five: outer 72 and 48, middle 60; inner 67 (7 away), 64 (4), 55 (5) -> 64 and 55
    assert corpus.register_order([72.0, 67.0, 64.0, 55.0, 48.0]) == [0, 2, 3, 4]
    # six, in scrambled score order: outer 76 and 45, middle 60.5; inner 71, 69, 62, 57 -> 62 and 57
    assert corpus.register_order([62.0, 45.0, 76.0, 69.0, 57.0, 71.0]) == [2, 0, 4, 1]
    # a tie for the second inner place goes to the higher part: middle 60, 64 and 56 both 4 away
    assert corpus.register_order([72.0, 61.0, 64.0, 56.0, 48.0]) == [0, 2, 1, 4]
    with pytest.raises(ValueError, match="3 parts with notes.*at least four"):
        corpus.register_order([70.0, 60.0, 50.0])


def test_top_line_keeps_the_highest_sounding_note_and_resumes_a_lower_one():
    # a double stop (60 under 64), then a held 55 under two short notes 67 and 65 with a gap
    start, length, pitch = [0, 0, 10, 10, 12, 16], [10, 10, 10, 2, 2, 2], [60, 64, 55, 67, 65, 62]
    line = corpus.top_line(np.array(start), np.array(length), np.array(pitch))
    assert [(s, e, p) for s, e, p, _ in line] == [
        (0, 10, 64),   # the chord's top note, for its whole length
        (10, 12, 67),
        (12, 14, 65),
        (14, 16, 55),  # the held note sounds again once nothing higher does
        (16, 18, 62),  # 62 is higher than the held 55 ...
        (18, 20, 55),  # ... which goes on after it
    ]
    assert [i for *_, i in line] == [1, 3, 4, 2, 5, 2]  # which source note each piece is (for velocity)
    assert corpus.top_line(np.array([]), np.array([]), np.array([])) == []


# ---------------------------------------------------------------------------------------------
# on music21 scores, through MIDI


def test_five_parts_keep_soprano_the_middle_two_and_bass():
    # score order is not register order: the bass is written first
    score = _score([("Basso", ["C3"] * 4), ("Canto", ["C5"] * 4), ("Quinto", ["G4"] * 4),
                    ("Tenore", ["G3"] * 4), ("Alto", ["E4"] * 4)])
    data, kept = corpus._register_midi_bytes(score)
    assert kept == ["Canto", "Alto", "Tenore", "Basso"]  # Quinto (G4, 7 from the middle C4) goes
    tracks = _tracks(data)
    assert list(tracks) == ["soprano", "alto", "tenor", "bass"]
    assert [{p for *_, p in tracks[v]} for v in tracks] == [{72}, {64}, {55}, {48}]
    assert [len(tracks[v]) for v in tracks] == [4, 4, 4, 4]


def test_six_parts_keep_the_inner_parts_nearest_the_middle_by_mean_pitch():
    # means: S 76, A1 71, A2 69, T1 62, T2 57, B 45 (A2 moves, so the mean is what counts)
    score = _score([("S", ["E5"] * 4), ("A1", ["B4"] * 4), ("A2", ["G4", "A4", "A4", "B4"]),
                    ("T1", ["D4"] * 4), ("T2", ["A3"] * 4), ("B", ["A2"] * 4)])
    data, kept = corpus._register_midi_bytes(score)
    assert kept == ["S", "T1", "T2", "B"]
    assert [{p for *_, p in notes} for notes in _tracks(data).values()] == [{76}, {62}, {57}, {45}]


def test_double_stops_and_two_voices_on_a_staff_keep_their_top_line():
    from music21 import note, stream

    viola = _part("Viola", [(["C4", "G4"], 2.0), ("E4", 1.0), (["A3", "F4"], 1.0)])
    cello = stream.Part()  # two voices on one staff: a held C3 under two short E3s
    cello.partName = cello.id = "Cello"
    cello.insert(0, note.Note("C3", quarterLength=4.0))
    cello.insert(0, note.Note("E3", quarterLength=1.0))
    cello.insert(2, note.Note("E3", quarterLength=1.0))
    score = stream.Score()
    for p in (_part("Violin 1", [(["E5", "C6"], 1.0), ("B5", 1.0), (["G4", "D5", "B5"], 2.0)]),
              _part("Violin 2", ["G4"] * 4), viola, cello):
        score.insert(0, p)
    tracks = _tracks(corpus._register_midi_bytes(score)[0])
    assert [(s, d, p) for s, d, p in tracks["soprano"]] == [(0, 1, 84), (1, 1, 83), (2, 2, 83)]
    assert [(s, d, p) for s, d, p in tracks["tenor"]] == [(0, 2, 67), (2, 1, 64), (3, 1, 65)]
    assert [(s, d, p) for s, d, p in tracks["bass"]] == [(0, 1, 52), (1, 1, 48), (2, 1, 52), (3, 1, 48)]


def test_a_pickup_is_padded_to_a_full_bar():
    from music21 import meter, note, stream

    score = stream.Score()
    for name, pitch in (("S", "C5"), ("A", "G4"), ("T", "E4"), ("B", "C3")):
        p = stream.Part()
        p.partName = p.id = name
        pickup = stream.Measure(number=0)
        pickup.append(meter.TimeSignature("4/4"))
        pickup.append(note.Note(pitch, quarterLength=1.0))
        pickup.padAsAnacrusis()
        full = stream.Measure(number=1)
        full.append(note.Note(pitch, quarterLength=4.0))
        p.append([pickup, full])
        score.insert(0, p)
    tracks = _tracks(corpus._register_midi_bytes(score)[0])
    assert tracks["soprano"] == [(3.0, 1.0, 72), (4.0, 4.0, 72)]  # the first full bar starts at 4 quarters


def test_a_piece_with_three_parts_is_skipped_with_its_reason(tmp_path):
    score = _score([("S", ["C5"] * 4), ("A", ["G4"] * 4), ("B", ["C3"] * 4)])
    src = tmp_path / "trio" / "piece.musicxml"
    src.parent.mkdir()
    score.write("musicxml", fp=str(src))
    result = corpus.convert_one(str(src), "palestrina", str(tmp_path / "cache"))
    assert result["outputs"] == []
    assert len(result["skipped"]) == 1 and "3 parts with notes" in result["skipped"][0]["reason"]
    marker = json.loads((tmp_path / "cache" / "trio__piece.musicxml.done.json").read_text())
    assert marker["skipped"] == result["skipped"]  # a second build does not convert it again


def test_the_style_sources_list_the_wheels_pieces():
    names = {s: [p.relative_to(corpus.music21_corpus_dir()).as_posix() for p in corpus.corpus_files(s)]
             for s in corpus.REGISTER_SOURCES}
    assert len(names["palestrina"]) > 1000 and all(n.endswith(".krn") for n in names["palestrina"])
    assert len(names["monteverdi"]) == 48 and "monteverdi/madrigal.3.1_old.mxl" not in names["monteverdi"]
    assert not any(n.startswith("mozart/k545/") for n in names["quartets"])  # a piano sonata
    assert "beethoven/opus18no1/movement1.krn" not in names["quartets"]  # the .mxl copy is read
    assert names["quartets"][0].startswith("haydn/")


def test_help_lists_the_style_sources(capsys):
    from musicgan import cli

    with pytest.raises(SystemExit):
        cli.main(["data", "build", "--help"])
    text = capsys.readouterr().out
    for name in ("palestrina", "monteverdi", "quartets", "styles"):
        assert f"\n  {name} " in text


# ---------------------------------------------------------------------------------------------
# the styles build


@pytest.fixture(scope="module")
def styles_build(ray_instance, tmp_path_factory):
    from musicgan.config import FeatureConfig
    from musicgan.data.build import build

    out = tmp_path_factory.mktemp("styles") / "data"
    return build("styles", str(out), FeatureConfig(), limit=3, files_per_shard=4, progress=False)


def _rows(result) -> dict[str, list]:
    cols = {"label": [], "source": [], "split": []}
    for shard in result.manifest["shards"]:
        table = pq.read_table(f"{result.out}/{shard['path']}", columns=list(cols))
        for k in cols:
            cols[k].extend(table.column(k).to_pylist())
    return cols


def test_styles_build_labels_every_phrase_with_its_files_style(styles_build):
    from musicgan.data.shards import split_of

    m = styles_build.manifest
    assert m["labels"] == ["bach", "palestrina", "monteverdi", "quartets"]
    rows = _rows(styles_build)
    assert len(rows["label"]) == m["counts"]["examples"] > 0
    for label, source, split in zip(rows["label"], rows["source"], rows["split"]):
        folder, name = source.split("/")
        assert folder.startswith(label + "-music21_"), (label, source)  # the style's own conversion cache
        assert split == split_of(name, m["feature_config"]["val_fraction"])  # as in the style's own build
    assert set(rows["label"]) == set(m["labels"])  # three files of each style give phrases


def test_styles_build_per_style_counts_add_up(styles_build):
    m = styles_build.manifest
    per, c = m["per_label"], m["counts"]
    assert list(per) == m["labels"]
    rows = _rows(styles_build)
    for label, p in per.items():
        assert p["examples"] == rows["label"].count(label) > 0
        assert p["train_examples"] + p["val_examples"] == p["examples"]
        assert p["files_ok"] + p["files_skipped"] == p["files_listed"] == 3
        assert len({s for s, lab in zip(rows["source"], rows["label"]) if lab == label}) == p["files_ok"]
        assert set(p["track_stats"]) == {"soprano", "alto", "tenor", "bass"}
        t = p["track_stats"]
        assert t["soprano"]["pitch_mean"] > t["bass"]["pitch_mean"]  # the layout is by register
        assert all(t[v]["notes_per_bar"] > 0 for v in t)
    for key, total in (("examples", "examples"), ("train_examples", "train_examples"),
                       ("val_examples", "val_examples"), ("files_ok", "files_ok"),
                       ("files_skipped", "files_skipped"), ("files_listed", "files_listed")):
        assert sum(p[key] for p in per.values()) == c[total], key
    skipped_labels = [s["label"] for s in m["skipped"]]
    assert all(skipped_labels.count(label) == p["files_skipped"] for label, p in per.items())


def test_styles_build_reads_back_with_one_label_index_per_style(styles_build):
    from musicgan.data.shards import ShardReader

    a = ShardReader(styles_build.out, split=None).arrays()
    assert sorted(set(a["label"].tolist())) == [0, 1, 2, 3]
    assert a["x"].shape[1:] == (4, 64, 60)  # the styles source's default range, 36:96 (a first violin's)
    fc = styles_build.manifest["feature_config"]
    assert (fc["pitch_low"], fc["pitch_high"]) == (36, 96)
    assert (a["x"].sum(axis=3) <= 1).all()  # every voice plays at most one pitch per step
