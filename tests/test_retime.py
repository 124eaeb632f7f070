"""Timestamps onto constant-rate grids (cmet.retime), colour tags (cmet.colour), output kinds (cmet.containers),
and a variable-frame-rate clip through ffmpeg: its frames land where their timestamps say."""

from __future__ import annotations

import numpy as np
import pytest

from cmet import media, retime
from cmet.colour import Colour
from cmet.containers import container_for
from cmet.errors import InputError
from tests import media_factory as mf


def test_constant_rate_maps_one_to_one():
    times = np.arange(10) / 30
    assert retime.output_rate(times, 30.0) == 30.0
    assert retime.slot_count(times, 30, 1 / 30) == 10
    assert retime.repeats(times, 30, 10).tolist() == [1] * 10


def test_rate_drop_holds_frames_and_keeps_their_times():
    """30 fps, then every other frame (15 fps): written at 30 with each late frame held for two slots."""
    times = np.concatenate([np.arange(6) / 30, (6 + 2 * np.arange(4)) / 30])
    rate = retime.output_rate(times, nominal=20.0)  # the average rate a header would report
    assert rate == 30.0
    count = retime.slot_count(times, rate, 1 / 20)
    assert count == 14  # 12/30 s of frames plus the last one's 2/30 s
    shown = retime.shown(times, rate, count)
    assert shown.tolist() == [0, 1, 2, 3, 4, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    assert np.abs(np.arange(count) / rate - times[shown]).max() <= 1 / rate + 1e-9
    assert retime.repeats(times, rate, count).tolist() == [1] * 6 + [2] * 4


def test_model_grid_is_by_time_not_index():
    """The same 10 frames, evenly spaced or bunched at the start, map to different 25 fps model frames."""
    even = np.arange(10) / 25
    bunched = np.concatenate([np.arange(5) / 25, 0.2 + 0.2 * np.arange(5)])
    assert retime.nearest(even, 25, 10).tolist() == list(range(10))
    count = retime.slot_count(bunched, 25, 0.04)
    assert retime.nearest(bunched, 25, count).tolist() == [0, 1, 2, 3, 4, 5, 10, 15, 20, 25]


def test_jittery_phone_timestamps_are_constant_rate():
    """Timestamps rounded to milliseconds (MKV) or jittering by a few: still one frame per slot."""
    rng = np.random.default_rng(0)
    times = np.round(np.arange(300) * 1001 / 30000 + rng.uniform(-0.003, 0.003, 300), 3)
    times -= times[0]
    rate = retime.output_rate(times, 30000 / 1001)
    assert rate == 30000 / 1001 and (retime.repeats(times, rate, 300) == 1).all()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yuv420p(tv, bt709, progressive)", Colour(False, "bt709", "bt709", "bt709")),
        ("yuvj420p(pc, bt470bg/unknown/unknown, progressive)", Colour(True, "bt470bg", None, None)),
        ("yuv420p(tv, bt709/bt709/smpte170m)", Colour(False, "bt709", "bt709", "smpte170m")),
        ("yuv420p(progressive)", Colour()),
        ("gbrp", Colour()),
    ],
)
def test_colour_is_read_from_the_stream_line(text, expected):
    assert Colour.parse(text) == expected


def test_colour_tags_leave_out_what_8_bit_sdr_cannot_carry():
    hdr = Colour(False, "bt2020nc", "bt2020", "smpte2084")
    assert hdr.filters() == "setparams=range=tv:colorspace=bt470bg"  # written as BT.601, and said so
    assert "colorspace=all=bt709" in Colour(True, "bt709").filters()


@pytest.mark.parametrize("name", ["a.mp4", "a.MOV", "a.m4v", "a.mkv", "a.webm", "a.gif"])
def test_known_output_kinds(name):
    assert container_for(name).muxer


@pytest.mark.parametrize("name", ["a.avi", "a.mp3", "out", "a.mp4.part"])
def test_other_output_kinds_are_refused_with_the_list(name):
    with pytest.raises(InputError, match=r"name the output with one of \.mp4, .*\.gif\."):
        container_for(name)


def test_variable_rate_file_keeps_every_frame_at_its_time(tmp_path):
    """Index-coded frames at 30 fps with a 15 fps stretch, written back through VideoWriter with the source's look."""
    frames = [mf.index_frame(i, (64, 48)) for i in range(30)]
    src = mf.make_vfr_video(tmp_path / "vfr.mp4", frames, 30, r"lt(n\,10)+gte(n\,20)+not(mod(n\,2))")
    info = media.probe(src)
    assert info.variable_rate and info.fps == 30 and info.frames == 25
    out = media.write_video(tmp_path / "out.mp4", media.iter_frames(src), info.fps, like=info)
    shown = [mf.decode_index(f) for f in media.iter_frames(out)]
    assert len(shown) == 30 and not media.probe(out).variable_rate
    assert max(abs(k / 30 - i / 30) for k, i in enumerate(shown)) <= 1 / 30 + 1e-9
    assert sorted(set(shown)) == sorted(mf.decode_index(f) for f in media.iter_frames(src))


def test_preview_of_a_variable_rate_clip_is_the_frame_the_edit_shows(tmp_path):
    """A preview (source frame k) equals the edited output at frame k's own time, before and after the rate drop."""
    from cmet.pipeline import EmotionEditor
    from tests.bad_inputs import EXAMPLE

    staged = tmp_path / "staged.mp4"
    mf._run(["-i", str(EXAMPLE), "-t", "1.2", "-vf", "fps=30,scale=160:160", "-an", f"file:{staged}"])
    frames = list(media.iter_frames(staged))
    src = mf.make_vfr_video(tmp_path / "phone.mp4", frames, 30, r"lt(n\,12)+not(mod(n\,2))")
    editor = EmotionEditor.load(engine="lite", device="cpu")
    out = editor.edit(src, target="preset:surprised", strength=2.0, out=tmp_path / "out.mp4").path
    edited = list(media.iter_frames(out))
    times = media.probe(src).frame_times()
    for k in (3, 14, 20):  # 30 fps part, 15 fps part
        preview = editor.preview(src, target="preset:surprised", strength=2.0, frame=k).astype(np.float32)
        shown = edited[round(times[k] * 30)].astype(np.float32)
        assert np.abs(preview - shown).mean() < 2.5, k
