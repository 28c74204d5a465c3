"""Speech for the voice-activity model: espeak-ng speaks real sentences, joined by silence / noise gaps, 16 kHz.

Each split is one continuous stream (chunks stay in order: a stateful model is evaluated closed-loop, fed its
own state). Splits use disjoint sentence sources and disjoint espeak-ng voices. The stream records where
each utterance is (trimmed of espeak's leading/trailing silence), so a chunk can be called speech or not.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

from .store import ZooError

RATE = 16000


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of `text` as float32 mono at 16 kHz."""
    exe = espeak_binary()
    if exe is None:
        raise ZooError("espeak-ng is not installed")
    proc = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                          capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise ZooError(f"espeak-ng -v {voice} failed (exit {proc.returncode}): "
                       f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    with wave.open(io.BytesIO(proc.stdout)) as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ZooError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit")
    x = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        x = x.reshape(-1, channels).mean(1)
    return _resample(x, rate, RATE)


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def _trim(x: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > threshold)
    return x[idx[0]: idx[-1] + 1] if len(idx) else x[:0]


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if kind == "silence":
        return white * 10 ** (-65 / 20)
    if kind == "room":  # brown-ish rumble
        brown = np.cumsum(white)
        brown -= np.convolve(brown, np.ones(400) / 400, mode="same")
        return (brown / (np.abs(brown).max() + 1e-9) * 10 ** (-38 / 20)).astype(np.float32)
    if kind == "hiss":
        return white * 10 ** (-40 / 20)
    if kind == "hum":  # mains hum with harmonics
        t = np.arange(n) / RATE
        return (sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 100, 150), 1)) * 0.01).astype(
            np.float32)
    raise ValueError(kind)


@dataclass(frozen=True)
class Stream:
    audio: np.ndarray  # float32, 16 kHz
    segments: tuple[tuple[int, int, str], ...]  # (start sample, end sample, sentence) of each utterance
    voices: tuple[str, ...]


def build_stream(sentences: list[str], voices: list[str], rng: np.random.Generator,
                 gap_s: tuple[float, float] = (0.4, 1.6)) -> Stream:
    """Utterances with random level, speed and pitch, separated by gaps of silence, room noise, hiss or hum."""
    parts: list[np.ndarray] = []
    segments: list[tuple[int, int, str]] = []
    pos = 0
    used: list[str] = []
    kinds = ("silence", "room", "hiss", "hum")
    for i, sentence in enumerate(sentences):
        gap = _noise(kinds[int(rng.integers(0, len(kinds)))], int(rng.uniform(*gap_s) * RATE), rng)
        parts.append(gap)
        pos += len(gap)
        voice = voices[i % len(voices)]
        used.append(voice)
        speech = _trim(speak(sentence, voice, int(rng.integers(140, 190)), int(rng.integers(30, 70))))
        level = 10 ** (rng.uniform(-20, -6) / 20)
        speech = speech / (np.abs(speech).max() + 1e-9) * level
        speech = speech + _noise("hiss", len(speech), rng) * rng.uniform(0.1, 1.0)
        parts.append(speech.astype(np.float32))
        segments.append((pos, pos + len(speech), sentence))
        pos += len(speech)
    tail = _noise("silence", int(gap_s[0] * RATE), rng)
    parts.append(tail)
    audio = np.clip(np.concatenate(parts), -1, 1).astype(np.float32)
    return Stream(audio, tuple(segments), tuple(dict.fromkeys(used)))


def chunk_feeds(stream: Stream, chunk: int = 512, context: int = 64) -> tuple[list[np.ndarray], np.ndarray]:
    """Model inputs [1, context + chunk] per chunk, as silero-vad's OnnxWrapper builds them (the previous chunk's
    last `context` samples prepended; zeros before the first), and a speech flag per chunk (half or more of
    the chunk inside an utterance)."""
    n = len(stream.audio) // chunk
    padded = np.concatenate([np.zeros(context, np.float32), stream.audio[: n * chunk]])
    inputs = [padded[i * chunk: i * chunk + context + chunk][None, :].copy() for i in range(n)]
    inside = np.zeros(n * chunk, bool)
    for a, b, _ in stream.segments:
        inside[a: min(b, n * chunk)] = True
    speech = inside.reshape(n, chunk).mean(1) >= 0.5
    return inputs, speech
