"""Break the code on purpose and check that the tests notice: each mutation is a one-line change a user would see.

Usage (from the repository root, with its virtual environment)::

    .venv/bin/python tools/mutations.py            # all mutations, a table at the end; exit 1 if one survives
    .venv/bin/python tools/mutations.py -k preview # only mutations whose name contains "preview"
    .venv/bin/python tools/mutations.py --list     # names, files and tests, nothing run

The working tree is copied once to a temporary folder (without .git, .venv and outputs); each mutation patches
one file there, runs its tests there with ``python -m pytest -x -q`` and puts the file back. First the same
tests run unmutated (``--no-baseline`` skips it), so a mutation counts as caught only by tests that pass without
it. Tracking and speech caches go to one temporary ``CMET_CACHE`` shared by the runs (no mutation here changes
what is cached). Not part of CI: the whole run takes about ten minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", "outputs", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "build", "dist")

VISIBLE = "tests/test_user_visible.py"
PRESETS = f"{VISIBLE}::test_every_preset_moves_its_key_measures_like_real_faces"


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``file``; ``tests`` should then fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "strength's size ignored (sign kept)",
        "cmet/speech_vector.py",
        "sign, gain = float(np.sign(strength)), abs(float(strength))",
        "sign, gain = float(np.sign(strength)), abs(float(np.sign(strength)))",
        (PRESETS,),
    ),
    Mutation(
        "strength 0 treated as 1",
        "cmet/speech_vector.py",
        "sign, gain = float(np.sign(strength)), abs(float(strength))",
        "sign, gain = float(np.sign(strength)) or 1.0, abs(float(strength)) or 1.0",
        (f"{VISIBLE}::test_strength_zero_is_the_input_frame_by_frame",),
    ),
    Mutation(
        "negative strength pushes towards the emotion",
        "cmet/speech_vector.py",
        "sign, gain = float(np.sign(strength)), abs(float(strength))",
        "sign, gain = abs(float(np.sign(strength))), abs(float(strength))",
        ("tests/test_pipeline.py::test_negative_strength_moves_the_other_way",),
    ),
    Mutation(
        "brow lowerer (AU4) zeroed: angry loses its brows",
        "cmet/lite_engine.py",
        "displacement = self.rig.decode(offsets[rows])",
        'displacement = self.rig.decode(offsets[rows] * (np.asarray(self.rig.names) != "AU4"))',
        (f"{PRESETS}[angry-inner_brow_raise]", f"{PRESETS}[angry-brow_raise]"),
    ),
    Mutation(
        "lip-corner puller (AU12) zeroed: happy smiles less",
        "cmet/lite_engine.py",
        "displacement = self.rig.decode(offsets[rows])",
        'displacement = self.rig.decode(offsets[rows] * (np.asarray(self.rig.names) != "AU12"))',
        (f"{PRESETS}[happy-corner_lift]",),
    ),
    Mutation(
        "upper-lid raiser (AU5) zeroed: surprise and fear lose their eyes",
        "cmet/lite_engine.py",
        "displacement = self.rig.decode(offsets[rows])",
        'displacement = self.rig.decode(offsets[rows] * (np.asarray(self.rig.names) != "AU5"))',
        (f"{PRESETS}[surprised-eye_open]", f"{PRESETS}[fear-eye_open]"),
    ),
    Mutation(
        "every preset renders as happy",
        "cmet/speech_vector.py",
        "preset = get_preset(name, E2V)",
        'preset = get_preset("happy" if name != "neutral" else name, E2V)',
        (PRESETS,),
    ),
    Mutation(
        "compare grid shows the first emotion in every cell",
        "cmet/pipeline.py",
        "offsets[n], own) for n in targets]",
        "offsets[next(iter(targets))], own) for n in targets]",
        (f"{VISIBLE}::test_compare_grid_cells_are_their_own_edits",),
    ),
    Mutation(
        "compare grid cells in reverse order (captions over the wrong emotion)",
        "cmet/grid.py",
        "streams[i][k], (cw, ch)",
        "streams[self.order[-1 - slot]][k], (cw, ch)",
        (f"{VISIBLE}::test_compare_grid_cells_are_their_own_edits",),
    ),
    Mutation(
        "edit written one frame early (same frame count)",
        "cmet/pipeline.py",
        "for k, batch in enumerate(media.iter_batches(video, size)))",
        "for k, batch in enumerate(np.array_split(np.concatenate([*media.iter_batches(video, size), "
        "media.read_frame(video, info.frames - 1)[None]])[1:], range(size, info.frames, size))))",
        (f"{VISIBLE}::test_edited_frames_come_out_at_their_input_times",),
    ),
    Mutation(
        "video written at 5/4 of its frame rate",
        "cmet/pipeline.py",
        "out, info.fps, audio_source=video,",
        "out, info.fps * 1.25, audio_source=video,",
        (f"{VISIBLE}::test_edited_frames_come_out_at_their_input_times",),
    ),
    Mutation(
        "/compare ignores each emotion's own strength",
        "app.py",
        "strengths[name] = default_strength if own is None else own",
        "strengths[name] = default_strength",
        ("tests/test_app_api.py::test_compare_gives_each_emotion_its_own_strength",),
    ),
    Mutation(
        "/preview ignores the frame number",
        "app.py",
        "frame=int(frame or 0))",
        "frame=0)",
        ("tests/test_app_api.py::test_preview_shows_the_chosen_frame_at_the_chosen_strength",),
    ),
    Mutation(
        "official render ignores the offsets",
        "cmet/official_engine.py",
        "analysis.exp[rows] + offsets[offset_rows]",
        "analysis.exp[rows] + 0 * offsets[offset_rows]",
        ("tests/test_official_engine.py::test_rendered_face_follows_the_offset",),
    ),
    Mutation(
        "official paste-back with a hard edge",
        "cmet/face/align.py",
        "alpha = np.clip(alpha, 0.0, 1.0)[..., None]",
        "alpha = (np.clip(alpha, 0.0, 1.0) > 0.5).astype(np.float32)[..., None]",
        ("tests/test_align.py::test_paste_fades_the_face_in_over_the_feather_width",),
    ),
    Mutation(
        "official paste-back mask ignores the feather width",
        "cmet/face/align.py",
        "ramp = np.clip(inside / feather, 0.0, 1.0)",
        "ramp = np.clip(inside / 2.0, 0.0, 1.0)",
        ("tests/test_align.py::test_paste_fades_the_face_in_over_the_feather_width",),
    ),
    Mutation(
        "official paste-back without colour matching at the seam",
        "cmet/face/align.py",
        "face += region[band].mean(0) - face[band].mean(0)",
        "pass",
        ("tests/test_align.py",),
    ),
    Mutation(
        "audio muxed 0.1 s late",
        "cmet/media.py",
        'f"asetpts=PTS-{start:.6f}/TB,',
        'f"asetpts=PTS-{start:.6f}/TB+0.1/TB,',
        ("tests/test_media.py::test_written_audio_stays_in_sync",),
    ),
    Mutation(
        "emotion weight off: neutral-vs-neutral speech still edits",
        "cmet/lite_engine.py",
        "weight = emotion_weight(scaled, noise, speech.n_reference, speech.n_target)",
        "weight = 1.0",
        ("tests/test_visible_edits.py::test_neutral_against_neutral_speech_is_no_edit",),
    ),
    Mutation(
        "shipped connector weights not loaded (random network)",
        "cmet/connector.py",
        "load_strict(model, state, root / WEIGHTS_FILE)",
        "pass",
        ("tests/test_train.py::test_committed_emotion2vec_connector_is_rescored_from_its_weights",),
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    caught_by: str  # the first failing test, "" when none failed
    seconds: float
    note: str = ""


def copy_tree(target: Path) -> Path:
    """The working tree as it is now (uncommitted changes included), without what the tests do not read."""
    shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(*SKIP), symlinks=True)
    return target


def pytest(copy: Path, tests: list[str], env: dict[str, str], python: str, exitfirst: bool = True) -> tuple[int, str]:
    """Run ``tests`` in ``copy``; returns pytest's exit code and its output."""
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *(["-x"] if exitfirst else []), *tests]
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def first_failure(output: str) -> str:
    """The first ``FAILED``/``ERROR`` test id in pytest's short summary (or the collection error)."""
    found = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return found.group(1) if found else "pytest exited with an error"


def skipped(output: str) -> bool:
    """Whether pytest skipped any of the selected tests (then a mutation cannot be judged by them)."""
    return re.search(r"\b\d+ skipped\b", output) is not None


def apply(copy: Path, mutation: Mutation) -> str:
    """Patch the copy's file; returns the original text (to restore) or raises if the line moved."""
    path = copy / mutation.file
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise LookupError(f"{mutation.file}: the line to mutate occurs {count} times (the code changed; update it)")
    path.write_text(text.replace(mutation.old, mutation.new))
    return text


def run(mutations: list[Mutation], python: str, baseline: bool, log) -> list[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="cmet-mutations-") as tmp:
        copy = copy_tree(Path(tmp) / "repo")
        if (REPO.parent / "shared").is_dir():  # sample data and fixtures the tests find beside the checkout
            (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        env = {**os.environ, "CMET_CACHE": str(Path(tmp) / "cache"), "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1"}
        env.pop("PYTEST_ADDOPTS", None)
        where = subprocess.run([python, "-c", "import cmet; print(cmet.__file__)"], cwd=copy, env=env, text=True,
                               capture_output=True).stdout.strip()  # fmt: skip
        if not where.startswith(str(copy)):
            raise SystemExit(f"the copy's cmet is not the one imported ({where}); check PYTHONPATH")
        if baseline:
            tests = sorted({t for m in mutations for t in m.tests})
            log(f"baseline: {len(tests)} test selections, unmutated")
            start = time.perf_counter()
            code, output = pytest(copy, tests, env, python, exitfirst=False)
            log(f"baseline: exit {code} in {time.perf_counter() - start:.0f} s")
            if code != 0 or skipped(output):
                log(output[-4000:])
                raise SystemExit("the tests fail or skip without any mutation; fix that first (or pass --no-baseline)")
        for mutation in mutations:
            start = time.perf_counter()
            try:
                original = apply(copy, mutation)
            except LookupError as err:
                outcomes.append(Outcome(mutation, "", 0.0, str(err)))
                log(f"SKIPPED  {mutation.name}: {err}")
                continue
            try:
                code, output = pytest(copy, list(mutation.tests), env, python)
            finally:
                (copy / mutation.file).write_text(original)
            seconds = time.perf_counter() - start
            caught = first_failure(output) if code != 0 else ""
            outcomes.append(Outcome(mutation, caught, seconds, "(tests skipped)" if skipped(output) else ""))
            verdict = f"caught   {mutation.name} ({seconds:.0f} s): {caught}" if caught else f"SURVIVED {mutation.name}"
            log(verdict)
    return outcomes


def table(outcomes: list[Outcome], total: float) -> str:
    """Markdown: mutation → the test that caught it, and the run's wall time."""
    lines = ["| mutation | file | caught by | s |", "|---|---|---|---|"]
    for o in outcomes:
        caught = f"`{o.caught_by}`" if o.caught_by else f"**not caught** {o.note}".strip()
        lines.append(f"| {o.mutation.name} | `{o.mutation.file}` | {caught} | {o.seconds:.0f} |")
    done = sum(bool(o.caught_by) for o in outcomes)
    lines.append(f"\n{done} of {len(outcomes)} mutations caught in {total / 60:.1f} min.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="keyword", default="", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations (is each line still there?)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the same tests")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the test dependencies")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.keyword.lower() in m.name.lower()]
    if args.list:
        for m in chosen:
            found = (REPO / m.file).read_text().count(m.old)
            state = "ok" if found == 1 else f"LINE FOUND {found} TIMES"
            print(f"{m.name} [{state}]\n    {m.file}: {m.old!r} -> {m.new!r}\n    {' '.join(m.tests)}")
        return 0
    start = time.perf_counter()
    outcomes = run(chosen, args.python, not args.no_baseline, lambda line: print(line, flush=True))
    print()
    print(table(outcomes, time.perf_counter() - start))
    return 0 if outcomes and all(o.caught_by for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
