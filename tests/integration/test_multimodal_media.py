"""Media decoding: real files from assets/ and deliberately broken ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from multimodal_tiny import one_torch_thread  # noqa: F401 (autouse fixture)
from PIL import Image

from mrepe_core.multimodal.concepts import MEDIA
from mrepe_core.multimodal.media import (
    CLAP_SAMPLE_RATE,
    MediaError,
    clean_text,
    decode_audio,
    decode_image,
    decode_text_file,
)

JPEG = MEDIA / "images" / "000000020247.jpg"
ROBIN = MEDIA / "audio" / "456440__inspectorj__bird-whistling-robin-single-13.ogg"
LONG_SONG = MEDIA / "audio" / "Karissa_Hobbs_-_Lets_Go_Fishin.ogg"


def test_real_jpeg_decodes_to_rgb_at_its_manifest_size():
    image = decode_image(JPEG)
    assert image.mode == "RGB" and image.size == (640, 457)


def test_real_ogg_is_mono_48k_with_the_manifest_duration():
    clip = decode_audio(ROBIN)
    assert clip.sample_rate == CLAP_SAMPLE_RATE == 48_000
    assert clip.source_sample_rate == 22_050
    assert clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
    assert clip.duration_s == pytest.approx(2.7, abs=0.1)
    assert not clip.truncated and np.abs(clip.waveform).max() > 0.01


def test_long_audio_is_cut_to_the_cap_and_says_so():
    clip = decode_audio(LONG_SONG, max_seconds=3.0)
    assert clip.truncated and clip.source_duration_s > 100
    assert clip.duration_s == pytest.approx(3.0, abs=0.01)


def test_resampling_preserves_a_tone(tmp_path):
    sr, f0 = 16_000, 440.0
    t = np.arange(sr) / sr
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * f0 * t), sr)
    clip = decode_audio(path)
    assert len(clip.waveform) == pytest.approx(48_000, abs=2)
    spectrum = np.abs(np.fft.rfft(clip.waveform))
    assert np.fft.rfftfreq(len(clip.waveform), 1 / 48_000)[spectrum.argmax()] == pytest.approx(f0, abs=2)


def test_stereo_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([np.full(4800, 0.5), np.full(4800, -0.1)], axis=1), 48_000)
    clip = decode_audio(path)
    assert np.allclose(clip.waveform, 0.2, atol=1e-4)


def test_truncated_jpeg_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(JPEG.read_bytes()[:5000])
    with pytest.raises(MediaError, match="cut.jpg.*(corrupt|truncated)"):
        decode_image(path)


@pytest.mark.parametrize("decode,name", [(decode_image, "empty.jpg"), (decode_audio, "empty.ogg")])
def test_empty_files_are_refused(tmp_path, decode, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        decode(path)


def test_text_renamed_ogg_is_not_audio(tmp_path):
    path = tmp_path / "notes.ogg"
    path.write_text("this is not a sound\n" * 20)
    with pytest.raises(MediaError, match="notes.ogg: not a readable audio file"):
        decode_audio(path)


def test_audio_renamed_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "robin.jpg"
    path.write_bytes(ROBIN.read_bytes())
    with pytest.raises(MediaError, match="not a readable image"):
        decode_image(path)


def test_oversize_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "big.jpg"
    with open(path, "wb") as f:  # sparse: the size is real, nothing is written
        f.truncate(21 * 1024 * 1024)
    with pytest.raises(MediaError, match="over the 21 MB limit|over the 2[0-9] MB limit"):
        decode_image(path)
    with pytest.raises(MediaError, match="limit"):
        decode_audio(ROBIN, max_bytes=1000)


def test_decompression_bomb_dimensions_are_refused(tmp_path):
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, format="PNG")  # 48 MP in a few kB
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(MediaError, match="megapixels"):
        decode_image(buf.getvalue())


def test_non_finite_audio_is_refused(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros(4800, dtype=np.float32)
    data[100] = np.nan
    sf.write(path, data, 48_000, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN"):
        decode_audio(path)


def test_texts_are_cleaned_and_capped(tmp_path):
    assert clean_text("  a   dog \n barks ") == "a dog barks"
    with pytest.raises(MediaError, match="empty"):
        clean_text("   ")
    with pytest.raises(MediaError, match="limit"):
        clean_text("x" * 3000)
    path = tmp_path / "texts.txt"
    path.write_text("a dog\n\n  a cat  \n", encoding="utf-8")
    assert decode_text_file(path) == ["a dog", "a cat"]
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(MediaError, match="UTF-8"):
        decode_text_file(path)


def test_decoding_equals_librosa_load_at_48k():
    """decode_audio skips importing librosa (~8 s) but must give what librosa.load gives: mono,
    float32, resampled with soxr_hq to CLAP's 48 kHz."""
    librosa = pytest.importorskip("librosa")
    ours = decode_audio(ROBIN).waveform
    ref, sr = librosa.load(str(ROBIN), sr=CLAP_SAMPLE_RATE, mono=True, res_type="soxr_hq")
    assert sr == CLAP_SAMPLE_RATE and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)
