"""cmet.media against media generated on the fly (tests/media_factory.py): exact frames, timelines, A/V sync, errors."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cmet import media, timeline
from cmet.errors import InputError
from tests import media_factory as mf

NTSC = 30000 / 1001


def _indices(frames) -> list[int]:
    return [mf.decode_index(f) for f in frames]


def _ffmpeg_children() -> list[int]:
    """PIDs of live ffmpeg processes started by this test process."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if int(rest[1]) == os.getpid() and "ffmpeg" in comm and rest[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _av_offsets(path: Path, fps: float) -> np.ndarray:
    """Click time minus flash time, in frames, for each click of a written video."""
    flashes = mf.flash_onsets(media.iter_frames(path)) / fps
    clicks = mf.click_times(media.read_audio(path, 16000), 16000)
    assert len(flashes) == len(clicks) > 0
    return (clicks - flashes) * fps


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fps", [24, 25, 30, NTSC])
def test_roundtrip_keeps_every_frame_rate_and_audio(tmp_path, fps):
    src = mf.make_video(tmp_path / "in.mp4", fps=fps, seconds=1.0)
    info = media.probe(src)
    n = round(fps)
    assert (info.frames, info.width, info.height, info.rotation, info.has_audio) == (n, 64, 48, 0, True)
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert info.duration == pytest.approx(n / fps)
    frames = list(media.iter_frames(src))
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert _indices(frames) == list(range(n))

    out = media.write_video(tmp_path / "out.mp4", frames, info.fps, audio_source=src)
    back = media.probe(out)
    assert (back.frames, back.width, back.height, back.has_audio) == (n, 64, 48, True)
    assert back.fps == pytest.approx(fps, rel=1e-6)
    assert _indices(media.iter_frames(out)) == list(range(n))
    assert media.read_audio(out).size / 16000 == pytest.approx(n / fps, abs=0.01)


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mov"])
def test_other_containers_count_frames_exactly(tmp_path, suffix):
    src = mf.make_video(tmp_path / f"in{suffix}", fps=30, seconds=0.5)
    assert media.probe(src).frames == 15
    assert _indices(media.iter_frames(src)) == list(range(15))


def test_edit_list_excerpt_counts_decoded_frames_not_packets(tmp_path):
    src = mf.make_video(tmp_path / "long.mp4", seconds=3.0)
    cut = mf.make_cut(src, tmp_path / "cut.mp4", start=1.3, seconds=1.0)  # ~60 packets, ~27 shown frames
    indices = _indices(media.iter_frames(cut))
    assert media.probe(cut).frames == len(indices) < 35
    assert indices[0] >= 30 and np.all(np.diff(indices) > 0)


def test_odd_size_is_read_exactly_and_written_even(tmp_path):
    frames = [mf.index_frame(i, (511, 387)) for i in range(5)]
    src = mf.make_video(tmp_path / "odd.mp4", fps=25, frames=frames, audio=False)
    info = media.probe(src)
    assert (info.width, info.height) == (511, 387)
    read = list(media.iter_frames(src))
    assert read[0].shape == (387, 511, 3)
    out = media.write_video(tmp_path / "out.mp4", read, 25)
    assert (media.probe(out).width, media.probe(out).height) == (512, 388)
    back = list(media.iter_frames(out))
    assert _indices(back) == list(range(5))
    assert np.abs(back[2][:387, :511].astype(int) - frames[2]).mean() < 4


def test_video_without_audio(tmp_path):
    src = mf.make_video(tmp_path / "silent film.mp4", audio=False)
    assert media.probe(src).has_audio is False
    out = media.write_video(tmp_path / "out.mp4", media.iter_frames(src), 25, audio_source=src)
    assert media.probe(out).has_audio is False
    assert media.extract_audio(src, tmp_path / "a.wav") is None
    with pytest.raises(InputError, match="no audio track"):
        media.read_audio(src)


def test_spaces_and_non_ascii_paths(tmp_path):
    folder = tmp_path / "dossier été – 視頻"
    folder.mkdir()
    src = mf.make_video(folder / "vidéo test.mp4", seconds=0.4)
    out = media.write_video(folder / "sortie ünïcode.mp4", media.iter_frames(src), 25, audio_source=src)
    assert media.probe(out).frames == 10 and media.read_audio(out).size > 0
    wav = media.extract_audio(src, folder / "son extrait.wav")
    assert wav is not None and sf.info(str(wav)).samplerate == 16000


# --------------------------------------------------------------------------- A/V sync


@pytest.mark.parametrize(
    ("fps", "seconds", "delay", "rates"),
    [(NTSC, 60.0, 0.0, ("model",)), (30, 4.0, 0.12, ("source", "model")), (24, 4.0, -0.12, ("source", "model"))],
    ids=["29.97-to-25fps-60s", "audio-starts-late", "video-starts-late"],
)
def test_written_audio_stays_in_sync(tmp_path, fps, seconds, delay, rates):
    """Clicks and flashes of the source must stay within ±1 frame after decode → encode → mux."""
    src = mf.make_video(tmp_path / "clicks.mp4", fps=fps, seconds=seconds, click_every=1.5, audio_delay=delay)
    info = media.probe(src)
    if "source" in rates:
        same = media.write_video(tmp_path / "same.mp4", media.iter_frames(src), info.fps, audio_source=src)
        assert np.abs(_av_offsets(same, info.fps)).max() <= 1.0
    if "model" in rates:
        at25 = media.write_video(tmp_path / "at25.mp4", media.iter_frames(src, fps=25), 25, audio_source=src)
        offsets = _av_offsets(at25, 25)
        assert len(offsets) == int((seconds - 0.2) / 1.5) + 1 and np.abs(offsets).max() <= 1.0
        assert media.probe(at25).frames == timeline.model_frame_count(info.frames, info.fps, 25)


def test_audio_shorter_than_video_is_padded_and_longer_is_trimmed(tmp_path):
    video = mf.make_video(tmp_path / "v.mp4", seconds=2.0, audio=False)
    short = mf.make_tone(tmp_path / "short.wav", seconds=0.5, sr=22050)
    long = mf.make_tone(tmp_path / "long.wav", seconds=5.0, sr=22050)
    for audio in (short, long):
        out = media.write_video(tmp_path / f"out_{audio.stem}.mp4", media.iter_frames(video), 25, audio_source=audio)
        samples = media.read_audio(out)
        assert samples.size / 16000 == pytest.approx(2.0, abs=0.01)
        assert (np.abs(samples[-1600:]).max() > 0.1) == (audio is long)


# --------------------------------------------------------------------------- timelines


@pytest.mark.parametrize(("fps", "n"), [(24, 29), (30, 37), (NTSC, 41), (50, 23), (12.5, 9), (25, 11)])
def test_resampling_to_25_matches_the_model_to_source_map(tmp_path, fps, n):
    src = mf.make_video(tmp_path / "v.mp4", fps=fps, seconds=n / fps, audio=False)
    info = media.probe(src)
    got = _indices(media.iter_frames(src, fps=25))
    n_model = timeline.model_frame_count(n, info.fps)
    assert len(got) == n_model == round(n * 25 / fps)
    assert got == timeline.model_to_source(n_model, info.fps, n).tolist()


def test_timeline_maps():
    assert timeline.model_to_source(8, 30, 10).tolist() == [0, 1, 2, 4, 5, 6, 7, 8]
    assert timeline.model_to_source(5, 25, 5).tolist() == [0, 1, 2, 3, 4]
    assert timeline.model_to_source(6, 12.5, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert timeline.source_to_model(5, 25, 5).tolist() == [0, 1, 2, 3, 4]
    for fps, n in [(30, 300), (NTSC, 600), (24, 240), (60, 100)]:
        n_model = timeline.model_frame_count(n, fps)
        back = timeline.source_to_model(n, fps, n_model)
        assert back.min() >= 0 and back.max() == n_model - 1 and np.all(np.diff(back) >= 0)
        assert np.abs(back / 25 - np.arange(n) / fps).max() <= 0.5 / 25 + 1e-9  # nearest model frame in time
        lag = (timeline.model_to_source(n_model, fps, n) / fps - np.arange(n_model) / 25)[:-1]
        assert np.all(lag < 0.5 / 25 + 1e-9) and np.all(lag > 0.5 / 25 - 1 / fps - 1e-9)  # the frame on screen then


# --------------------------------------------------------------------------- streaming and seeking


def test_iteration_streams_and_stopping_early_ends_ffmpeg(tmp_path):
    src = mf.make_video(tmp_path / "v.mp4", size=(256, 256), seconds=4.0, audio=False)
    frame_bytes = 256 * 256 * 3
    tracemalloc.start()
    count = sum(1 for _ in media.iter_frames(src))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 100 and peak < 10 * frame_bytes  # all frames would be 100×

    frames = media.iter_frames(src)
    next(frames)
    assert _ffmpeg_children()
    frames.close()
    assert not _ffmpeg_children()
    frames = media.iter_frames(src)
    next(frames)
    del frames  # dropped without close(): garbage collection must still end ffmpeg
    assert not _ffmpeg_children()


def test_frames_are_writable_arrays(tmp_path):
    frame = next(iter(media.iter_frames(mf.make_video(tmp_path / "v.mp4", audio=False))))
    frame[0, 0] = 7  # consumers may draw on frames in place


def test_read_frame_seeks_to_the_same_pixels(tmp_path):
    src = mf.make_video(tmp_path / "v.mp4", fps=NTSC, seconds=3.0, audio=False)
    frames = list(media.iter_frames(src))
    for i in (0, 1, 29, 30, 47, len(frames) - 1):
        assert np.array_equal(media.read_frame(src, i), frames[i])
    at25 = list(media.iter_frames(src, fps=25))
    for k in (0, 13, len(at25) - 1):
        assert np.array_equal(media.read_frame(src, k, fps=25), at25[k])
    with pytest.raises(IndexError):
        media.read_frame(src, len(frames))


def test_stretches_read_by_seeking_join_to_the_whole_video(tmp_path):
    src = mf.make_video(tmp_path / "v.mp4", fps=NTSC, seconds=3.0, audio=False)
    frames = list(media.iter_frames(src))
    bounds = [0, 1, 31, 60, len(frames)]
    joined = [f for a, b in zip(bounds[:-1], bounds[1:]) for f in media.iter_frames(src, start=a, count=b - a)]
    assert _indices(joined) == _indices(frames)
    assert all(np.array_equal(a, b) for a, b in zip(joined, frames))
    with pytest.raises(ValueError, match="fps"):
        media.iter_frames(src, fps=25, start=3)


def test_streams_without_an_index_are_read_in_order(tmp_path):
    """MPEG-TS with a start offset: ffmpeg's seek lands up to a second late, so frames are decoded in order."""
    import subprocess

    import imageio_ffmpeg

    src = mf.make_video(tmp_path / "v.mp4", seconds=6.0)
    stream = tmp_path / "v.ts"
    encode = ["-c:v", "libx264", "-bf", "2", "-g", "50", "-c:a", "aac", str(stream)]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(src), *encode], check=True)
    frames = list(media.iter_frames(stream))
    assert not media.probe(stream).seekable and media.probe(src).seekable
    for i in (0, 10, 30, 75, len(frames) - 1):
        assert np.array_equal(media.read_frame(stream, i), frames[i])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_reads_as_displayed(tmp_path, rotation):
    src = mf.make_video(tmp_path / "phone.mp4", size=(64, 48), seconds=0.2, rotation=rotation)
    info = media.probe(src)
    portrait = rotation in (90, 270)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((48, 64) if portrait else (64, 48))
    first = next(iter(media.iter_frames(src)))
    expected = np.rot90(mf.index_frame(0, (64, 48)), k=-rotation // 90)  # clockwise
    assert first.shape == expected.shape
    assert np.abs(first.astype(int) - expected).mean() < 6
    assert media.read_frame(src, 3).shape == expected.shape


# --------------------------------------------------------------------------- speech reading

AUDIO_CASES = [
    ("wav", "s16", 16000, 1),
    ("wav", "u8", 8000, 1),
    ("wav", "s16", 48000, 2),
    ("wav", "s24", 44100, 1),
    ("wav", "s32", 22050, 2),
    ("wav", "flt", 32000, 1),
    ("mp3", None, 44100, 2),
    ("m4a", None, 48000, 1),
    ("ogg", None, 22050, 2),
    ("webm", None, 48000, 1),
    ("flac", None, 44100, 2),
]


@pytest.mark.parametrize(("fmt", "sample_fmt", "sr", "channels"), AUDIO_CASES)
def test_read_audio_any_format_gives_16k_mono_float(tmp_path, fmt, sample_fmt, sr, channels):
    path = mf.make_tone(tmp_path / f"tone.{fmt}", 1.5, sr, 440, channels, sample_fmt=sample_fmt, amplitude=0.5)
    audio = media.read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / 16000 == pytest.approx(1.5, abs=0.03)
    assert np.abs(audio).max() <= 1.0
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio * np.hanning(audio.size)))) * 16000 / audio.size
    assert peak_hz == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(audio[1600:-1600] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_stereo_is_mixed_to_the_channel_mean(tmp_path):
    left_only = np.stack([mf.tone(1.0, 44100, 300, 0.8), np.zeros(44100, np.float32)], axis=1)
    audio = media.read_audio(mf.write_audio(tmp_path / "left.wav", left_only, 44100))
    assert np.abs(audio[800:-800]).max() == pytest.approx(0.4, abs=0.02)
    loud = np.repeat(mf.tone(1.0, 44100, 300, 0.95)[:, None], 2, axis=1)
    assert np.abs(media.read_audio(mf.write_audio(tmp_path / "loud.wav", loud, 44100))).max() <= 0.96


def test_read_audio_other_rate_and_video_track(tmp_path):
    tone = mf.make_tone(tmp_path / "t.wav", seconds=1.0, sr=44100, freq=1000)
    assert media.read_audio(tone, sr=8000).size == 8000
    video = mf.make_video(tmp_path / "v.mp4", seconds=2.0)
    from_video = media.read_audio(video)
    assert from_video.size / 16000 == pytest.approx(2.0, abs=0.03)
    wav = media.extract_audio(video, tmp_path / "track.wav")
    data, rate = sf.read(str(wav), dtype="float32")
    assert rate == 16000 and data.ndim == 1 and np.abs(data - from_video).max() < 1e-3


# --------------------------------------------------------------------------- bad input


def _bad_video(tmp_path: Path, kind: str) -> Path:
    good = tmp_path / "good.mp4"
    makers = {
        "missing": lambda: tmp_path / "nope.mp4",
        "folder": lambda: tmp_path,
        "zero-byte": lambda: mf.make_corrupt(tmp_path / "zero.mp4", "empty"),
        "text-as-mp4": lambda: mf.make_corrupt(tmp_path / "notes.mp4", "text"),
        "garbage": lambda: mf.make_corrupt(tmp_path / "noise.mov", "garbage"),
        "truncated": lambda: mf.make_truncated(mf.make_video(good, seconds=2), tmp_path / "cut.mp4", 0.6),
        "truncated-faststart": lambda: mf.make_truncated(
            mf.remux_faststart(mf.make_video(good, seconds=2), tmp_path / "fs.mp4"), tmp_path / "cut.mp4", 0.6
        ),
        "audio-only-wav": lambda: mf.make_tone(tmp_path / "speech.wav"),
        "audio-only-m4a-as-mp4": lambda: mf.make_tone(tmp_path / "speech.mp4", fmt="m4a"),
        "png-as-video": lambda: mf.make_image(tmp_path / "face.png"),
        "png-renamed-mp4": lambda: (mf.make_image(tmp_path / "face.png")).rename(tmp_path / "face.mp4"),
    }
    return makers[kind]()


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "folder",
        "zero-byte",
        "text-as-mp4",
        "garbage",
        "truncated",
        "truncated-faststart",
        "audio-only-wav",
        "audio-only-m4a-as-mp4",
        "png-as-video",
        "png-renamed-mp4",
    ],
)
def test_bad_videos_raise_a_readable_input_error(tmp_path, kind):
    path = _bad_video(tmp_path, kind)
    with pytest.raises(InputError) as err:
        media.probe(path)
    message = str(err.value)
    assert path.name in message and "Traceback" not in message and message.endswith(".")
    with pytest.raises(InputError):
        list(media.iter_frames(path))


@pytest.mark.parametrize("kind", ["missing", "text", "video-without-audio", "empty-wav"])
def test_bad_audio_raises_input_error(tmp_path, kind):
    path = {
        "missing": lambda: tmp_path / "nope.wav",
        "text": lambda: mf.make_corrupt(tmp_path / "speech.wav", "text"),
        "video-without-audio": lambda: mf.make_video(tmp_path / "v.mp4", audio=False),
        "empty-wav": lambda: mf.write_audio(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000),
    }[kind]()
    with pytest.raises(InputError, match=path.name):
        media.read_audio(path)


# --------------------------------------------------------------------------- writer safety


def test_writer_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    src = mf.make_video(tmp_path / "in.mp4", seconds=0.4)
    with pytest.raises(RuntimeError, match="boom"), media.VideoWriter(target, 25, audio_source=src) as writer:
        for i, frame in enumerate(media.iter_frames(src)):
            writer.write(frame)
            if i == 5:
                raise RuntimeError("boom")
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]
    assert not _ffmpeg_children()


def test_writer_refuses_to_overwrite_its_input_or_write_nowhere(tmp_path):
    src = mf.make_video(tmp_path / "in.mp4", seconds=0.2)
    before = src.read_bytes()
    with pytest.raises(InputError, match="input"):
        media.VideoWriter(src, 25, audio_source=src)
    with pytest.raises(InputError, match="input"):
        media.write_video(tmp_path / "." / "in.mp4", [np.zeros((8, 8, 3), np.uint8)], 25, audio_source=src)
    with pytest.raises(InputError, match="input"):
        media.extract_audio(src, src)
    with pytest.raises(InputError, match="does not exist"):
        media.VideoWriter(tmp_path / "no such folder" / "out.mp4", 25)
    with pytest.raises(InputError, match="does not exist"):
        media.VideoWriter(src / "out.mp4", 25)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_writer_rejects_bad_frames(tmp_path):
    with media.VideoWriter(tmp_path / "out.mp4", 25) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((8, 8, 3), np.float32))
        writer.write(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="size changed"):
            writer.write(np.zeros((10, 8, 3), np.uint8))
    assert media.probe(tmp_path / "out.mp4").frames == 1


@pytest.mark.parametrize("status, raised", [(255, KeyboardInterrupt), (1, InputError)])
def test_a_decoder_stopped_by_ctrl_c_is_an_interruption_not_a_bad_file(tmp_path, status, raised):
    """Ctrl-C reaches ffmpeg too, which exits with 255: whichever notices first, the user hears "interrupted",
    not that their file could not be decoded; any other failure still names the file."""
    frames = media._stream_frames(["sh", "-c", f"exit {status}"], (2, 2), tmp_path / "clip.mp4", None, 1)
    with pytest.raises(raised):
        next(frames)
