"""What the rangers' verdicts say a frame shows (their verdicts are the ground truth).

- each verdict says "bear" (CONFIRM, MISSED) or "not bear" (DISMISS);
- when every reviewer of the frame says the same, that is its truth;
- when reviewers disagree the frame is *disputed* until a third ranger looks; from three
  verdicts on, a strict majority settles it (adjudication by majority).

Rangers err (bench/calibration.py: 5% of bears missed, 0.2% of empty frames called bear),
and one ranger's verdict against the model weighs heavily in the estimates: a bear on an
audited unflagged frame stands for 1/inclusion missed sightings, a dismissed flag turns an
alert false. So :func:`needs_another_look` sends such a lone verdict to a second ranger,
and two rangers who disagree to a third (the review queue's SECOND_LOOK items).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import sqlalchemy as sa

from bearwatch.schema import Verdict


class Truth(str, enum.Enum):
    BEAR = "bear"
    NOT_BEAR = "not_bear"
    DISPUTED = "disputed"


BEAR_VERDICTS = frozenset({Verdict.CONFIRM, Verdict.MISSED})


def says_bear(verdict: Verdict) -> bool:
    return verdict in BEAR_VERDICTS


def truth_of(verdicts: Sequence[tuple[int, Verdict]]) -> Truth:
    if not verdicts:
        raise ValueError("a reviewed frame has at least one verdict")
    bear = sum(says_bear(v) for _, v in verdicts)
    if bear == len(verdicts):
        return Truth.BEAR
    if bear == 0:
        return Truth.NOT_BEAR
    if len(verdicts) >= 3 and 2 * bear != len(verdicts):
        return Truth.BEAR if 2 * bear > len(verdicts) else Truth.NOT_BEAR
    return Truth.DISPUTED


SETTLING_LOOKS = 3  # a frame gets at most this many verdicts through the second-look queue


def needs_another_look(flagged: bool, verdicts: Sequence[tuple[int, Verdict]]) -> bool:
    """A lone verdict against the model (a dismissed flag, a bear on a frame it did not
    flag) goes to a second ranger; two rangers who disagree go to a third. The same rule
    in SQL: shadow.second_looks (over the vote summary frame_votes)."""
    labels = [says_bear(v) for _, v in verdicts]
    if len(labels) == 1:
        return labels[0] != flagged
    if len(labels) == 2:
        return labels[0] != labels[1]
    return False


_IntSql = sa.ColumnElement[int] | sa.orm.QueryableAttribute[int]


def is_bear_sql(bear_votes: _IntSql, votes: _IntSql) -> sa.ColumnElement[bool]:
    """SQL over a frame's aggregated verdicts: :func:`truth_of` is BEAR."""
    return sa.or_(bear_votes == votes, sa.and_(votes >= 3, 2 * bear_votes > votes))
