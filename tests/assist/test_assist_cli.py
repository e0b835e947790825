"""The assistant's commands (harmonize, continue, inpaint, sample --bars) run through ``musicgan.cli.main``
in-process on an untrained cpu-masked-tiny checkpoint (the commands' contract does not depend on
training): what is given comes back exactly, in the user's key and tempo; the lengths are right;
the PNG shows the given notes apart; a mistake is one ``error:`` line with exit status 2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pretty_midi
import pytest

from musicgan import cli
from musicgan.config import FeatureConfig
from tests.checkpoints import save_untrained

FC = FeatureConfig()  # 4 voices soprano..bass, 16 steps a bar, 4-bar phrases, pitches 36..83
DATA = {"kind": "pianoroll", "feature_config": dataclasses.asdict(FC), "feature_hash": "test",
        "example_shape": [4, FC.bars * FC.steps_per_bar, FC.pitch_high - FC.pitch_low], "labels": ["bach"],
        "bars": FC.bars, "steps_per_bar": FC.steps_per_bar, "pitch_low": FC.pitch_low,
        "track_names": FC.track_names, "voice_ranges": [[60, 81], [53, 74], [48, 69], [36, 62]]}
QPM = 100.0
STEP_S = 60.0 / QPM / 4  # a sixteenth at 100 quarter notes a minute
GIVEN_RGB = np.array([0x22, 0x22, 0x22]) / 255


def save_checkpoint(path, preset: str):
    """An untrained generator of ``preset`` saved as training saves it (no Ray)."""
    return str(save_untrained(path, preset, DATA))


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("masked") / "checkpoint_000006", "cpu-masked-tiny")


@pytest.fixture(scope="module")
def unmasked(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("plain") / "checkpoint_000006", "cpu-tiny")


def write_midi(path, voices: list[list[tuple[int, int, int]]], qpm: float = QPM) -> str:
    """``voices``: per track, notes as (MIDI pitch, start step, end step) on the sixteenth grid."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
    step_s = 60.0 / qpm / 4
    for i, notes in enumerate(voices):
        inst = pretty_midi.Instrument(program=0, name=f"voice {i}")
        inst.notes = [pretty_midi.Note(90, p, s * step_s, e * step_s) for p, s, e in notes]
        pm.instruments.append(inst)
    pm.write(str(path))
    return str(path)


def read_notes(path, step_s: float = STEP_S) -> tuple[list[list[tuple[int, int, int]]], float]:
    """Each track's notes as sorted (pitch, start step, end step), and the file's first tempo."""
    pm = pretty_midi.PrettyMIDI(str(path))
    tracks = [sorted((n.pitch, round(n.start / step_s), round(n.end / step_s)) for n in inst.notes)
              for inst in pm.instruments]
    return tracks, float(pm.get_tempo_changes()[1][0])


def staccato(pitches, first_step: int = 0) -> list[tuple[int, int, int]]:
    """Quarter notes sounding 3 of their 4 sixteenths: a rest between notes, so no two merge."""
    return [(p, first_step + 4 * i, first_step + 4 * i + 3) for i, p in enumerate(pitches)]


def given_pixels(png_path) -> int:
    from matplotlib.image import imread

    rgb = imread(str(png_path))[..., :3]
    return int((np.abs(rgb - GIVEN_RGB).max(-1) < 0.5 / 255).sum())


def run_ok(argv, capsys) -> str:
    assert cli.main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def one_line_error(argv, capsys) -> str:
    """Run a command that must fail as a user mistake; its one stderr line."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------


def test_harmonize_keeps_the_melody_exactly_in_the_users_key_and_tempo(masked, tmp_path, capsys):
    # 6 bars of quarters at D3..A3: below the soprano's 60..81, so it is moved up 10 semitones to
    # fit and must come back down in the output
    scale = [50, 52, 53, 55, 57, 55, 53, 52]
    melody = [(p, 4 * i, 4 * i + 4) for i, p in enumerate(scale * 3)]  # legato, no repeated neighbours
    src = write_midi(tmp_path / "tune.mid", [melody])
    out = tmp_path / "harm"
    text = run_ok(["harmonize", "--model", masked, "--melody", src, "--out", str(out), "--n", "2", "--no-wav"],
                  capsys)
    mids = sorted(out.glob("harmonization_*.mid"))
    assert [p.name for p in mids] == ["harmonization_000.mid", "harmonization_001.mid"]
    assert not list(out.glob("*.wav"))
    for path in mids:
        tracks, tempo = read_notes(path)
        assert tempo == pytest.approx(QPM)
        assert tracks[0] == sorted(melody)  # the soprano: the melody, pitch for pitch, onset for onset
        assert any(tracks[1:]), "the model wrote no other voice"
        assert max(e for t in tracks for _, _, e in t) <= 6 * 16
    assert "transposed +10 semitones" in text and "track 'voice 0', 6 bars" in text and "seed 0" in text
    # the melody (given) in near-black: thousands of pixels; text anti-aliasing makes at most a few
    assert given_pixels(out / "harmonizations.png") > 1000


def test_harmonize_the_bass_and_the_same_seed_gives_the_same_files_by_either_option_name(masked, tmp_path, capsys):
    bass = staccato([43, 45, 47, 48, 50, 48, 47, 45])  # 2 bars in the bass range: not transposed
    src = write_midi(tmp_path / "bass.mid", [bass])
    runs = []
    for name, option in (("a", "--model"), ("b", "--checkpoint")):  # the name still works
        text = run_ok(["harmonize", option, masked, "--melody", src, "--voice", "bass", "--out",
                       str(tmp_path / name), "--n", "1", "--seed", "5", "--no-wav"], capsys)
        runs.append(read_notes(tmp_path / name / "harmonization_000.mid")[0])
    assert runs[0] == runs[1]
    assert runs[0][3] == sorted(bass) and "not transposed" in text and "as the bass" in text


def test_continue_keeps_the_prompt_and_adds_the_bars(masked, tmp_path, capsys):
    # a 2-bar prompt with soprano and alto only: tenor and bass are written in its bars too
    soprano, alto = staccato([72, 71, 69, 67, 69, 71, 72, 74]), staccato([64, 62, 60, 59, 60, 62, 64, 65])
    src = write_midi(tmp_path / "prompt.mid", [soprano, alto])
    out = tmp_path / "cont"
    text = run_ok(["continue", "--model", masked, "--prompt", src, "--bars", "3", "--out", str(out), "--n", "1",
                   "--no-wav"], capsys)
    tracks, tempo = read_notes(out / "continuation_000.mid")
    assert tempo == pytest.approx(QPM)
    prompt_steps = 2 * 16
    for given, written in ((soprano, tracks[0]), (alto, tracks[1])):
        assert [n for n in written if n[1] < prompt_steps] == sorted(given)
    assert any(s < prompt_steps for _, s, _ in tracks[2]), "the tenor, absent from the prompt, was not written there"
    ends = [e for t in tracks for _, _, e in t]
    assert max(ends) <= 5 * 16 and any(s >= prompt_steps for t in tracks for _, s, _ in t)
    assert "continuation(s) of 5 bars" in text and "the prompt has no tenor, bass" in text
    assert given_pixels(out / "continuations.png") > 500


def test_inpaint_changes_nothing_outside_the_region_and_writes_wav(masked, tmp_path, capsys):
    piece = [staccato([72, 74, 76, 77] * 5), staccato([67, 65, 64, 62] * 5), staccato([60, 59, 57, 55] * 5),
             staccato([48, 43, 45, 41] * 5)]  # 5 bars, every note with a rest after it
    src = write_midi(tmp_path / "piece.mid", piece)
    out = tmp_path / "fill"
    text = run_ok(["inpaint", "--model", masked, "--midi", src, "--bars", "3:4", "--voices", "alto,Tenor",
                   "--out", str(out), "--n", "1"], capsys)
    tracks, tempo = read_notes(out / "inpainting_000.mid")
    assert tempo == pytest.approx(QPM)
    region = range(2 * 16, 4 * 16)  # bars 3 and 4, in steps
    assert tracks[0] == sorted(piece[0]) and tracks[3] == sorted(piece[3])  # not asked for: untouched
    for t in (1, 2):
        outside = [n for n in tracks[t] if n[1] not in region]
        assert outside == sorted(n for n in piece[t] if n[1] not in region), t
        assert all(e <= region.stop for _, s, e in tracks[t] if s in region)  # nothing spills out of the region
    assert (out / "inpainting_000.wav").read_bytes()[:4] == b"RIFF"
    assert "bars 3-4 of the alto, tenor rewritten" in text
    assert given_pixels(out / "inpaintings.png") > 1000


def test_sample_bars_on_a_masked_model_writes_pieces_of_that_length(masked, tmp_path, capsys):
    out = tmp_path / "long"
    text = run_ok(["sample", "--model", masked, "--bars", "10", "--n", "1", "--out", str(out), "--no-wav"], capsys)
    bar_steps = 16
    tracks, _ = read_notes(out / "sample_000.mid", step_s=60.0 / 90.0 / 4)  # sample writes at 90 qpm
    ends = [e for t in tracks for _, _, e in t]
    assert 8 * bar_steps < max(ends) <= 10 * bar_steps
    assert "pieces of 10 bars" in text and "phrase by phrase" in text
    assert given_pixels(out / "samples.png") < 200  # nothing given: no near-black notes


def test_sample_bars_on_an_unmasked_model_takes_whole_phrases_only(unmasked, tmp_path, capsys):
    out = tmp_path / "eight"
    text = run_ok(["sample", "--model", unmasked, "--bars", "8", "--n", "2", "--out", str(out), "--no-wav"], capsys)
    tracks, _ = read_notes(out / "sample_001.mid", step_s=60.0 / 90.0 / 4)
    assert 4 * 16 < max(e for t in tracks for _, _, e in t) <= 8 * 16
    assert "2 phrases of 4 bars side by side" in text
    line = one_line_error(["sample", "--model", unmasked, "--bars", "6", "--out", str(tmp_path / "six")], capsys)
    assert "multiple of 4" in line and "only masked models" in line


def test_mistakes_are_one_line_with_exit_2(masked, unmasked, tmp_path, capsys):
    piece = write_midi(tmp_path / "piece.mid", [staccato([72, 74, 76, 77] * 3), staccato([60, 59, 57, 55] * 3)])
    out = str(tmp_path / "o")
    line = one_line_error(["harmonize", "--model", unmasked, "--melody", piece, "--out", out], capsys)
    assert "unmasked pianoroll model (preset cpu-tiny)" in line and "--preset cpu-masked" in line
    line = one_line_error(["inpaint", "--model", masked, "--midi", piece, "--bars", "3:9", "--out", out], capsys)
    assert "which has 3 bars" in line
    for bad in ("x", "0:2", "4:3"):
        line = one_line_error(["inpaint", "--model", masked, "--midi", piece, "--bars", bad, "--out", out], capsys)
        assert "--bars" in line and "counted from 1" in line
    line = one_line_error(["inpaint", "--model", masked, "--midi", piece, "--bars", "2", "--voices", "alto,viola",
                           "--out", out], capsys)
    assert "unknown voice 'viola'" in line and "soprano, alto, tenor, bass" in line
    text_file = tmp_path / "tune.mid"
    text_file.write_text("not a midi file\n")
    line = one_line_error(["harmonize", "--model", masked, "--melody", str(text_file), "--out", out], capsys)
    assert "not a readable MIDI file" in line
    line = one_line_error(["continue", "--model", masked, "--prompt", str(tmp_path / "nope.mid"), "--bars", "2",
                           "--out", out], capsys)
    assert "prompt" in line and "does not exist" in line
    line = one_line_error(["harmonize", "--model", masked, "--melody", piece, "--out", out, "--track", "lead"],
                          capsys)
    assert "no track named 'lead'" in line
    assert not (tmp_path / "o").exists()  # nothing written by a refused command


def test_pianoroll_png_draws_given_notes_in_near_black_and_the_rest_in_track_colours():
    import io

    from matplotlib.image import imread

    from musicgan.render import pianoroll_png

    rolls = np.zeros((1, 4, 64, 48), bool)
    rolls[0, 0, :, 30] = True  # soprano: given
    rolls[0, 3, :, 5] = True  # bass: generated
    given = np.zeros((1, 4, 64), bool)
    given[0, 0] = True

    def colours(png: bytes) -> tuple[int, int]:
        """Pixels of the given colour and of the soprano's red."""
        rgb = imread(io.BytesIO(png))[..., :3]
        return tuple(int((np.abs(rgb - c).max(-1) < 0.5 / 255).sum())
                     for c in (GIVEN_RGB, np.array([0xD6, 0x27, 0x28]) / 255))

    with_given, plain = colours(pianoroll_png(rolls, DATA, given=given)), colours(pianoroll_png(rolls, DATA))
    assert with_given[0] > 500 and plain[0] < 50  # the line is drawn near-black only when given
    assert plain[1] > 500 and with_given[1] < plain[1] - 400  # ...and then not red (the legend's patch stays)
    with pytest.raises(ValueError, match="given must be shaped"):
        pianoroll_png(rolls, DATA, given=given[:, :2])


def test_voice_choices_of_the_cli_are_the_commands_voices():
    from musicgan.assist.commands import VOICE_TRACKS

    assert set(cli.VOICE_CHOICES) == set(VOICE_TRACKS)


def test_sample_style_picks_the_label_and_refuses_what_the_model_does_not_know(masked, tmp_path, capsys):
    """``sample --style`` on a model trained on several styles conditions on that style's label: its notes
    are the generator's for that label (and differ between styles); a wrong style names the model's."""
    import torch

    from musicgan.checkpoint import load_generator
    from musicgan.gan import generate
    from musicgan.render import to_midi

    styled = str(save_untrained(tmp_path / "styled" / "checkpoint_000006", "cpu-tiny",
                                {**DATA, "labels": ["bach", "palestrina", "quartets"]}))
    out = {}
    for style in ("Palestrina", "bach"):
        folder = tmp_path / style
        text = run_ok(["sample", "--model", styled, "--style", style, "--n", "2", "--out", str(folder), "--no-wav",
                       "--seed", "4"], capsys)
        assert f"style {style.lower()}" in text
        out[style] = (folder / "sample_001.mid").read_bytes()
    assert out["Palestrina"] != out["bach"]
    g, _, data, _ = load_generator(styled)
    expected = generate(g, 2, seed=4, labels=torch.full((2,), 1, dtype=torch.long)).numpy()
    written = tmp_path / "expected.mid"
    to_midi(expected[1], data).write(str(written))
    assert read_notes(written, step_s=60.0 / 90.0 / 4) == read_notes(tmp_path / "Palestrina" / "sample_001.mid",
                                                                     step_s=60.0 / 90.0 / 4)
    line = one_line_error(["sample", "--model", styled, "--style", "jazz", "--out", str(tmp_path / "j")], capsys)
    assert "jazz" in line and "bach, palestrina, quartets" in line
    line = one_line_error(["sample", "--model", masked, "--style", "bach", "--out", str(tmp_path / "m")], capsys)
    assert "one style only" in line and "--source styles" in line
