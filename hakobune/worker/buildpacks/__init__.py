"""Buildpack-style detection: each detector looks at a source tree and either
recognises it, saying why in words and returning a BuildPlan, or passes.
DETECTORS is ordered most specific first."""

from __future__ import annotations

from pathlib import Path

from .plan import BuildPlan, Detection, NoStackDetected
from . import python

DETECTORS = [python]


def detect(src: Path) -> Detection:
    for detector in DETECTORS:
        detection = detector.detect(src)
        if detection is not None:
            return detection
    tried = "; ".join(f"{detector.NAME}: {detector.LOOKS_FOR}" for detector in DETECTORS)
    raise NoStackDetected(
        f"Hakobune could not tell what kind of app this is. It looked for — {tried}. "
        "Add the file your language expects at the top of the folder you upload."
    )


__all__ = ["BuildPlan", "Detection", "NoStackDetected", "DETECTORS", "detect"]
