"""Audio helpers shared by the server, the simulator and the tests: mu-law, resampling, WAV.

Twilio Media Streams carry 8 kHz mono G.711 mu-law in 20 ms frames (160 bytes). Whisper wants
16 kHz float PCM; piper speaks at the voice's native rate (22,050 Hz for the embedded voice).
"""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr

TWILIO_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = TWILIO_RATE * FRAME_MS // 1000  # mu-law is one byte a sample

_BIAS = 0x84
_CLIP = 32635


def _build_ulaw_decode_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.int16)
    for i in range(256):
        u = ~i & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        sample = ((mantissa << 3) + _BIAS) << exponent
        sample -= _BIAS
        table[i] = -sample if sign else sample
    return table


_ULAW_DECODE = _build_ulaw_decode_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes (G.711)."""
    pcm = samples.astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """int16 -> int16 at another rate (soxr, high quality)."""
    if from_rate == to_rate or samples.size == 0:
        return samples.astype(np.int16, copy=False)
    out = soxr.resample(samples.astype(np.float32) / 32768.0, from_rate, to_rate, quality="HQ")
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def pcm16_to_float(samples: np.ndarray | bytes) -> np.ndarray:
    if isinstance(samples, (bytes, bytearray, memoryview)):
        samples = np.frombuffer(samples, dtype=np.int16)
    return samples.astype(np.float32) / 32768.0


def rms_dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return 20 * np.log10(max(rms, 1e-9) / 32768.0)


def read_wav(path_or_bytes) -> tuple[np.ndarray, int]:
    """A mono (or first channel of) 16-bit WAV -> (int16 samples, rate)."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    with wave.open(src, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("only 16-bit PCM WAV files are supported")
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        channels = wav.getnchannels()
        if channels > 1:
            frames = frames.reshape(-1, channels)[:, 0]
        return frames.copy(), wav.getframerate()


def write_wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype(np.int16).tobytes())
