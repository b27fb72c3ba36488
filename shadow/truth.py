"""What the rangers' verdicts say a frame shows (their verdicts are the ground truth).

- each verdict says "bear" (CONFIRM, MISSED) or "not bear" (DISMISS);
- when every reviewer of the frame says the same, that is its truth;
- when reviewers disagree the frame is *disputed*.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from bearwatch.schema import Verdict


class Truth(str, enum.Enum):
    BEAR = "bear"
    NOT_BEAR = "not_bear"
    DISPUTED = "disputed"


BEAR_VERDICTS = frozenset({Verdict.CONFIRM, Verdict.MISSED})


def says_bear(verdict: Verdict) -> bool:
    return verdict in BEAR_VERDICTS


def truth_of(verdicts: Sequence[tuple[int, Verdict]]) -> Truth:
    labels = {says_bear(v) for _, v in verdicts}
    if not labels:
        raise ValueError("a reviewed frame has at least one verdict")
    if len(labels) > 1:
        return Truth.DISPUTED
    return Truth.BEAR if labels.pop() else Truth.NOT_BEAR
