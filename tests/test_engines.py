"""Engine choice and options: ``auto`` follows the official engine's own requirements, options reach the engines."""

from __future__ import annotations

import itertools

import pytest

from cmet import hub
from cmet.cli import build_parser
from cmet.engines import choose_engine
from cmet.errors import InputError, MissingWeightsError
from cmet.options import LiteOptions, OfficialOptions, from_arguments


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    """An empty ``CMET_CHECKPOINTS`` and hub cache: only files a test places count."""
    import huggingface_hub.constants

    monkeypatch.setenv("CMET_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "checkpoints"


@pytest.mark.parametrize("lips", ["video", "audio"])
def test_auto_picks_official_exactly_when_the_engine_finds_its_files(checkpoints, lips):
    from cmet.official_engine import OfficialEngine

    options = OfficialOptions(lips=lips)
    for present in itertools.chain.from_iterable(itertools.combinations(hub.OFFICIAL_FILES, n) for n in range(4)):
        for name in hub.OFFICIAL_FILES:
            (checkpoints / name).unlink(missing_ok=True)
        for name in present:
            (checkpoints / name).parent.mkdir(parents=True, exist_ok=True)
            (checkpoints / name).write_bytes(b"")  # found, not loadable: the choice only looks for files
        chosen, reason = choose_engine("auto", options)
        try:
            OfficialEngine("cpu", options)
            found_all = True
        except MissingWeightsError:
            found_all = False
        except InputError:  # every file was found; the empty stand-ins then fail to load
            found_all = True
        assert (chosen == "official") == found_all, (lips, present, reason)
        assert chosen == "official" or "missing" in reason


def test_audio2lip_is_needed_only_for_lips_from_audio(checkpoints):
    for name in (hub.CMET_CHECKPOINT, hub.EDTALK):
        (checkpoints / name).parent.mkdir(parents=True, exist_ok=True)
        (checkpoints / name).write_bytes(b"")
    assert choose_engine("auto", OfficialOptions(lips="video"))[0] == "official"
    name, reason = choose_engine("auto", OfficialOptions(lips="audio"))
    assert name == "lite" and "Audio2Lip.pt" in reason


def test_cli_options_are_the_dataclass_fields():
    base = ["edit", "face.mp4", "--target", "preset:happy", "-o", "out.mp4"]
    defaults = build_parser().parse_args(base)
    assert from_arguments(OfficialOptions, defaults) == OfficialOptions()
    assert from_arguments(LiteOptions, defaults) == LiteOptions()
    given = build_parser().parse_args(
        [*base, "--lips", "audio", "--precision", "fp32", "--compile", "--network-batch", "2", "--torch-threads", "3"]
    )
    assert from_arguments(OfficialOptions, given) == OfficialOptions("audio", "fp32", True, 2)
    assert from_arguments(LiteOptions, given) == LiteOptions(torch_threads=3)
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--lips", "mouth"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: OfficialOptions(lips="mouth"),
        lambda: OfficialOptions(precision="fp8"),
        lambda: OfficialOptions(network_batch=0),
        lambda: LiteOptions(torch_threads=0),
    ],
)
def test_bad_options_are_one_sentence(make):
    with pytest.raises(InputError, match="must be"):
        make()
