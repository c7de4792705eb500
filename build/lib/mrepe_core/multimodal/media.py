"""Decoding user media (images, audio clips) with size caps and clear errors.

Every failure raises :class:`MediaError` (a ``ValueError``) whose message names the file and says
what to do. Nothing here touches a model: the encoders receive decoded RGB images and mono 48 kHz
float waveforms.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MediaSource = str | os.PathLike | bytes

# CLAP's feature extractor is built for 48 kHz input and refuses anything else.
CLAP_SAMPLE_RATE = 48_000

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# Decoded images are shrunk to this longest side (the encoders look at 224-336 px): a batch of
# 16 uploads then holds at most 16 x 12.6 MB of pixels instead of 16 x 120 MB.
MAX_IMAGE_SIDE = 2048
MAX_AUDIO_BYTES = 30 * 1024 * 1024
MAX_AUDIO_SECONDS = 30.0
MAX_TEXT_CHARS = 2_000
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


class MediaError(ValueError):
    """A media file cannot be used; the message says why and what to upload instead."""


def _name(source: MediaSource) -> str:
    return "upload" if isinstance(source, (bytes, bytearray)) else Path(source).name


def _read_capped(source: MediaSource, cap: int, kind: str) -> bytes:
    """Read the bytes of a file or buffer, refusing empty or oversize input before reading it."""
    name = _name(source)
    if isinstance(source, (bytes, bytearray)):
        size = len(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MediaError(f"{name}: file not found. Upload the {kind} again.")
        size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{name}: the file is empty (0 bytes). Upload a non-empty {kind} file.")
    if size > cap:
        raise MediaError(
            f"{name}: {size / 1e6:.1f} MB is over the {cap / 1e6:.0f} MB limit for {kind} files. "
            f"Upload a smaller or shorter {kind}."
        )
    return bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()


def decode_image(
    source: MediaSource,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_side: int | None = MAX_IMAGE_SIDE,
):
    """Decode an image file to an RGB ``PIL.Image`` (first frame of animated formats), shrunk to
    ``max_side`` pixels on its longest side when larger (None: full size).

    The pixel count is checked from the header before any pixel is decoded, so a small file that
    claims a huge canvas (a decompression bomb) is refused cheaply; JPEGs larger than twice
    ``max_side`` are decoded at a reduced scale directly.
    """
    from PIL import Image, UnidentifiedImageError

    name = _name(source)
    data = _read_capped(source, max_bytes, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"{name}: the image claims too many pixels ({exc}). Downscale it first.") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(
            f"{name}: not a readable image ({type(exc).__name__}). Upload a JPEG, PNG, WebP, GIF or BMP file."
        ) from exc
    if image.format not in IMAGE_FORMATS:
        raise MediaError(f"{name}: {image.format} images are not accepted. Upload one of {', '.join(IMAGE_FORMATS)}.")
    width, height = image.size
    if width < 1 or height < 1:
        raise MediaError(f"{name}: the image has no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise MediaError(
            f"{name}: {width}x{height} = {width * height / 1e6:.0f} megapixels is over the "
            f"{max_pixels / 1e6:.0f} MP limit. Downscale the image first."
        )
    if max_side and max(width, height) > max_side and image.format == "JPEG":
        image.draft("RGB", (max_side, max_side))  # DCT scaling: never below the requested size
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncated/corrupt streams as OSError
        raise MediaError(f"{name}: the image data is corrupt or truncated ({exc}). Re-export the file.") from exc
    rgb = image.convert("RGB")
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


@dataclass(frozen=True)
class DecodedAudio:
    """A mono float32 waveform at ``sample_rate`` plus what decoding did to it."""

    waveform: np.ndarray
    sample_rate: int
    source_sample_rate: int
    duration_s: float
    source_duration_s: float
    truncated: bool
    name: str


def resample(waveform: np.ndarray, source_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample(y, orig_sr, target_sr, res_type="soxr_hq")``, computed the same way
    (soxr HQ, length fixed to ``ceil(n * ratio)``) without importing librosa, whose import alone
    takes ~8 s (numba, scipy.signal)."""
    import soxr

    if source_sr == target_sr:
        return waveform
    n_out = int(np.ceil(len(waveform) * float(target_sr) / source_sr))
    out = soxr.resample(waveform, source_sr, target_sr, quality="HQ")
    return out[:n_out] if len(out) >= n_out else np.pad(out, (0, n_out - len(out)))


def decode_audio(
    source: MediaSource,
    target_sr: int = CLAP_SAMPLE_RATE,
    max_seconds: float = MAX_AUDIO_SECONDS,
    max_bytes: int = MAX_AUDIO_BYTES,
) -> DecodedAudio:
    """Decode an audio file with libsndfile (WAV, FLAC, OGG/Vorbis, MP3, ...), mix to mono, keep the
    first ``max_seconds`` and resample to ``target_sr`` (librosa's soxr_hq resampling)."""
    import soundfile as sf

    name = _name(source)
    data = _read_capped(source, max_bytes, "audio")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            source_sr = int(f.samplerate)
            total_frames = int(f.frames)
            if source_sr <= 0:
                raise MediaError(f"{name}: invalid sample rate {source_sr}.")
            keep = min(total_frames, int(round(max_seconds * source_sr)))
            frames = f.read(frames=keep, dtype="float32", always_2d=True)
    except MediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise MediaError(f"{name}: not a readable audio file ({exc}). Upload WAV, FLAC, OGG/Vorbis or MP3.") from exc
    if frames.shape[0] == 0:
        raise MediaError(f"{name}: the audio stream has no samples. Upload a clip with sound in it.")
    mono = frames.mean(axis=1)
    if not np.isfinite(mono).all():
        raise MediaError(f"{name}: the audio contains NaN or infinite samples; the file is corrupt.")
    mono = resample(mono, source_sr, target_sr)
    waveform = np.ascontiguousarray(mono, dtype=np.float32)
    return DecodedAudio(
        waveform=waveform,
        sample_rate=target_sr,
        source_sample_rate=source_sr,
        duration_s=len(waveform) / target_sr,
        source_duration_s=total_frames / source_sr,
        truncated=total_frames > frames.shape[0],
        name=name,
    )


def clean_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Strip a user text and refuse empty or overlong input."""
    if not isinstance(text, str):
        raise MediaError("Text input must be a string.")
    text = " ".join(text.split())
    if not text:
        raise MediaError("The text is empty. Type a sentence to embed.")
    if len(text) > max_chars:
        raise MediaError(f"The text has {len(text)} characters; the limit is {max_chars}. Shorten it.")
    return text


def decode_text_file(source: MediaSource, max_bytes: int = 256 * 1024) -> list[str]:
    """One text per non-empty line of a UTF-8 text file (for uploading several texts at once)."""
    name = _name(source)
    data = _read_capped(source, max_bytes, "text")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MediaError(f"{name}: not UTF-8 text. Save the file as UTF-8 with one text per line.") from exc
    lines = [line for line in (" ".join(raw.split()) for raw in content.splitlines()) if line]
    if not lines:
        raise MediaError(f"{name}: no non-empty lines. Put one text per line.")
    return [clean_text(line) for line in lines]
