"""Fit the lite rig to real faces: emotion prototypes and action-unit apexes from the real-face table.

For each emotion the real-face table (``cmet/data/real_faces``, measured by ``tools/measure_real_expressions.py``)
gives the change of every expression measure against neutral and the mean displacement of every landmark.
The prototype is the non-negative mix of the rig's action units whose measures match the targets (each
weighted by its uncertainty) while its landmark field stays close to the real one. A measure's target is the
real value combined, by inverse variance, with what the EMFACS prototype predicts (standard error
``PRIOR_SE``): where hundreds of people were measured (happy) the photos decide, where the photos are thin they
share, and a measure whose photo mean does not stand clear of its own error (sad brows: −0.006 ± 0.012 IOD) is
FACS's alone. Mouth opening is held at zero: in a talking video the lips follow the
speech, and the edit must keep them. So where an emotion's photos open the mouth wide (surprised and angry
faces gape or shout: ≥ ``OPEN_MOUTH`` IOD), the mouth's other measures come from EMFACS alone: the photos' lip
corners drop and lips thin with the open jaw, and fitted to a closed mouth that reads as sadness. An action
unit's apex (coefficient 1) is then set to its strongest use over the emotions, so coefficients stay in 0…1.
The jaw drop (speech moves it) and the one-sided R12 (the photos are averaged over both sides) are not fitted.

Emotions whose real data are too thin (``min_photos``) keep the EMFACS prototype of ``au_rig``, without its jaw drop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmet.face.measures import KEY_MEASURES, MEASURES, expression_measures

FIELD_WEIGHT = 0.3  # landmark-field term relative to the measures (per landmark, canonical units)
HELD_AT_ZERO = {"mouth_open": 0.004}  # measure → the standard error it is held to zero with
MIN_SE = 0.004  # no measure is trusted to better than this (FaceMesh's own noise on a still face)
SPEECH_UNIT = "AU26"  # the jaw drop: the speech moves it, no emotion may
MIN_APEX = 0.1  # a unit used less than this by every fitted emotion keeps its EMFACS apex
KEY_TIGHTNESS = 2.0
PRIOR_SE = 0.015  # how far a real face may stray from the EMFACS prediction of a measure
SIGNIFICANT = 2.0  # a photo mean within this many standard errors of zero says nothing: FACS alone sets that measure
OPEN_MOUTH = 0.1  # IOD: photos whose mean mouth opening is this wide do not say what a closed mouth does
MOUTH_SHAPE = ("mouth_width", "corner_lift", "upper_lip_raise", "lip_thickness")
# Units only the emotions FACS names them for may use. The nose wrinkler and upper-lip raiser is disgust's own sign;
# free to all, the fit used it to thicken happy and angry lips (the photos' upper lips rise with the open mouth)
# and wrinkled the nose of every smile.
SIGNATURE_UNITS = {"AU9": ("disgusted",)}


@dataclass(frozen=True)
class Calibration:
    """Per-emotion prototype coefficients (rig units after apex scaling) and the apex scale of each unit."""

    prototypes: dict[str, dict[str, float]]
    apex: dict[str, float]
    sources: dict[str, str]
    transfer: dict[str, dict[str, float]] = field(default_factory=dict)  # emotion → measure → share FaceMesh reads

    def save(self, path: Path) -> None:
        data = {"apex": self.apex, "prototypes": self.prototypes, "sources": self.sources, "transfer": self.transfer}
        path.write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        data = json.loads(path.read_text())
        return cls(data["prototypes"], data["apex"], data["sources"], data.get("transfer", {}))


def measure_jacobian(template: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """``[M, 956]`` change of each measure per unit landmark displacement at the template (small edits are linear)."""
    base = expression_measures(template)
    names = list(MEASURES)
    flat = np.asarray(template, np.float64).reshape(-1)
    jacobian = np.zeros((len(names), flat.size))
    for j in np.nonzero(np.isin(np.arange(flat.size) // 2, _measured_points()))[0]:
        moved = flat.copy()
        moved[j] += step
        values = expression_measures(moved.reshape(-1, 2))
        jacobian[:, j] = [(values[k] - base[k]) / step for k in names]
    return jacobian


def _measured_points() -> np.ndarray:
    """Landmarks any measure reads (the Jacobian is zero elsewhere)."""
    template = np.zeros((478, 2))
    touched = set()
    for index in range(478):
        moved = template.copy()
        moved[index] = 1.0
        a, b = expression_measures(template), expression_measures(moved)
        if any(abs(a[k] - b[k]) > 0 for k in MEASURES):
            touched.add(index)
    return np.array(sorted(touched))


def measure_targets(
    table_entry: dict, prior: np.ndarray, keys: tuple[str, ...] = (), transfer: dict[str, float] | None = None
) -> dict[str, tuple[float, float]]:
    """(target, standard error) per measure: the real value and the EMFACS ``prior`` values, inverse-variance mixed.

    ``keys`` (the measures a person reads the emotion by) are held ``KEY_TIGHTNESS`` times tighter. ``transfer``
    is the share of a landmark edit that FaceMesh reads back on a rendered face (the same instrument measured
    the real faces): real values are raised by it so the rendered edit reads as the real one does. The prior is
    already a landmark edit and is not raised (raising it tripled FACS's brow gap for anger).
    """
    targets = {}
    gaping = table_entry["measures"]["mouth_open"]["mean"] >= OPEN_MOUTH
    paired = table_entry.get("method") == "same person"
    for i, name in enumerate(MEASURES):
        if name in HELD_AT_ZERO:
            targets[name] = (0.0, HELD_AT_ZERO[name])
            continue
        stats = table_entry["measures"][name]
        share = (transfer or {}).get(name, 1.0)
        unsure = abs(stats["mean"]) < SIGNIFICANT * stats["se"]
        w_real = 0.0 if unsure or (gaping and name in MOUTH_SHAPE) else (share / max(stats["se"], MIN_SE)) ** 2
        sure = name in keys and w_real > 0 and paired  # a key measure within person and significant: photos decide
        w_prior = 0.0 if sure else 1.0 / PRIOR_SE**2
        mean = (w_real * stats["mean"] / share + w_prior * float(prior[i])) / (w_real + w_prior)
        targets[name] = (mean, (w_real + w_prior) ** -0.5 / (KEY_TIGHTNESS if name in keys else 1.0))
    return targets


def fit_emotion(
    bases: np.ndarray,
    jacobian: np.ndarray,
    targets: dict[str, tuple[float, float]],
    field: np.ndarray,
    units: list[int],
) -> np.ndarray:
    """Non-negative coefficients ``[K]`` (only ``units`` may be non-zero) matching one emotion's measure targets."""
    from scipy.optimize import nnls

    flat = bases.reshape(len(bases), -1)  # [K, 956]
    rows, values = [], []
    for i, name in enumerate(MEASURES):
        mean, se = targets[name]
        rows.append(jacobian[i] @ flat[units].T / se)
        values.append(mean / se)
    skin = np.repeat(np.arange(478) < 468, 2)  # iris points move with gaze, not expression
    field_rows = FIELD_WEIGHT * flat[units][:, skin].T / np.sqrt(skin.sum() / 2) / MIN_SE
    system = np.vstack([np.array(rows), field_rows])
    rhs = np.concatenate([values, FIELD_WEIGHT * field.reshape(-1)[skin] / np.sqrt(skin.sum() / 2) / MIN_SE])
    solution, _ = nnls(system, rhs)
    coeffs = np.zeros(len(bases))
    coeffs[units] = solution
    return coeffs


def calibrate(
    names: list[str],
    bases: np.ndarray,
    template: np.ndarray,
    table: dict,
    fields: dict[str, np.ndarray],
    fallback: dict[str, dict[str, float]],
    min_photos: int = 30,
    excluded_units: tuple[str, ...] = (SPEECH_UNIT, "R12"),
    transfer: dict[str, dict[str, float]] | None = None,
) -> Calibration:
    """Prototypes and apexes for every emotion of ``fallback`` (EMFACS), real-fitted where the data allow."""
    jacobian = measure_jacobian(template)
    units = [i for i, name in enumerate(names) if name not in excluded_units]
    raw: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for emotion, emfacs in fallback.items():
        entry = table.get(emotion)
        emfacs_coeffs = np.array([emfacs.get(name, 0.0) if name != SPEECH_UNIT else 0.0 for name in names])
        if emotion != "neutral" and entry and entry["photos"] >= min_photos and emotion in fields:
            prior = jacobian @ (emfacs_coeffs @ bases.reshape(len(bases), -1))
            targets = measure_targets(entry, prior, KEY_MEASURES.get(emotion, ()), (transfer or {}).get(emotion))
            allowed = [k for k in units if emotion in SIGNATURE_UNITS.get(names[k], (emotion,))]
            raw[emotion] = fit_emotion(bases, jacobian, targets, fields[emotion], allowed)
            people = f"{entry['people']} people" if entry["people"] else f"{entry['photos']} photos vs all neutral"
            sources[emotion] = f"fitted to real faces ({entry['method']}, {people})"
        else:
            raw[emotion] = emfacs_coeffs
            sources[emotion] = "EMFACS (too few real photos)" if emotion != "neutral" else "no change"
    fitted = [e for e, s in sources.items() if s.startswith("fitted")]
    apex = {}
    for k, name in enumerate(names):
        strongest = max((raw[e][k] for e in fitted), default=0.0)
        apex[name] = float(strongest) if strongest > MIN_APEX else 1.0
    prototypes = {
        emotion: {name: round(float(c / apex[name]), 4) for name, c in zip(names, coeffs) if c > 1e-6}
        for emotion, coeffs in raw.items()
    }
    apexes = {k: round(v, 4) for k, v in apex.items()}
    shares = {e: {k: round(v, 3) for k, v in by_measure.items()} for e, by_measure in (transfer or {}).items()}
    return Calibration(prototypes, apexes, sources, shares)


MIN_TRANSFER = 0.3  # a measure FaceMesh reads back less than this of is not compensated beyond ~3×


def transfer_shares(intended: np.ndarray, read: np.ndarray) -> dict[str, float]:
    """Per measure, the least-squares share ``read ≈ share × intended`` over one emotion's rendered edits
    ``[N, M]`` (columns in ``MEASURES`` order), clipped to [``MIN_TRANSFER``, 1]; measures the edits hardly moved
    keep 1."""
    shares = {}
    for j, name in enumerate(MEASURES):
        x, y = intended[:, j], read[:, j]
        energy = float(x @ x) / max(len(x), 1)
        shares[name] = float(np.clip((x @ y) / float(x @ x), MIN_TRANSFER, 1.0)) if energy > 1e-4 else 1.0
    return shares
