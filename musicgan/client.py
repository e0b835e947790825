"""A small client for the served model: ``generate(...)`` returns ``pretty_midi.PrettyMIDI`` objects
(pianoroll models), ``generate_audio(...)`` WAV bytes (spectrogram models).

    from musicgan.client import generate, generate_audio
    pms = generate("http://127.0.0.1:8000", n_samples=2, n_bars=8, seed=7)
    pms[0].write("first.mid")
    wav = generate_audio("http://127.0.0.1:8000", pitch=60, instrument="flute", n_samples=2, seed=7)

Standard library HTTP only. Server-side validation errors come back as :class:`ClientError`
with the server's message (which names the field).
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile


class ClientError(RuntimeError):
    def __init__(self, status: int, detail):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def request(url: str, body: dict, timeout_s: float = 120.0) -> tuple[bytes, dict]:
    """POST ``body`` to ``url``/v1/generate; returns (content, headers)."""
    req = urllib.request.Request(url.rstrip("/") + "/v1/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            detail = json.loads(raw).get("detail", raw.decode(errors="replace"))
        except ValueError:
            detail = raw.decode(errors="replace")
        raise ClientError(e.code, detail) from None


def generate(url: str = "http://127.0.0.1:8000", n_samples: int = 1, n_bars: int | None = None,
             seed: int | None = None, temperature: float | None = None, threshold: float | None = None,
             condition: str | None = None, tempo_qpm: float = 90.0, timeout_s: float = 120.0) -> list:
    """Generate ``n_samples`` pieces; one ``PrettyMIDI`` each (fetched as one zip)."""
    import pretty_midi

    body = {"n_samples": n_samples, "format": "zip", "tempo_qpm": tempo_qpm}
    for key, value in (("n_bars", n_bars), ("seed", seed), ("temperature", temperature), ("threshold", threshold),
                       ("condition", condition)):
        if value is not None:
            body[key] = value
    content, _ = request(url, body, timeout_s)
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".mid"))
        return [pretty_midi.PrettyMIDI(io.BytesIO(z.read(n))) for n in names]


def generate_audio(url: str = "http://127.0.0.1:8000", pitch: int | None = None, instrument: str | None = None,
                   n_samples: int = 1, seed: int | None = None, timeout_s: float = 120.0) -> bytes:
    """``n_samples`` notes of one ``pitch`` (MIDI number) and ``instrument`` from a spectrogram
    model, as one WAV (the notes in order, a short silence between). ``None`` leaves the choice to
    the server (the model's first pitch or instrument; a random seed). A pitch or instrument the
    model does not know is a :class:`ClientError` (422) whose detail lists the ones it does."""
    body: dict = {"n_samples": n_samples, "format": "wav"}
    for key, value in (("pitch", pitch), ("instrument", instrument), ("seed", seed)):
        if value is not None:
            body[key] = value
    content, _ = request(url, body, timeout_s)
    return content
