"""The creation assistant: harmonize a melody, continue a phrase, fill in a region, write long pieces.

One masked generator (``model.masked``, :mod:`musicgan.model`) does every task: it takes the known
cells of a roll and a mask over (track, step) and returns a full roll with the known cells copied in.

- :mod:`musicgan.assist.fill`: the tasks as masks, and the window-by-window path for pieces and
  melodies longer than one phrase.
- :mod:`musicgan.assist.midi_in`: a user's MIDI (or note list) as a melody or a piece on the model's grid.
- :mod:`musicgan.assist.metrics`: chord agreement, keys, seams, spread.
- :mod:`musicgan.assist.evaluate`: ``musicgan evaluate --task``, with the clamp and random baselines.
"""
