"""The error hierarchy: every error a user can cause says what went wrong and what to do."""


class BearwatchError(Exception):
    """Base class; the CLI prints these as one clear line and exits non-zero."""


class ConfigError(BearwatchError):
    """The settings or the park configuration file are invalid."""


# DatabaseBusy (a write that found the lock taken too long) is in bearwatch.db, with SQLAlchemy.


class DatabaseNotReady(BearwatchError):
    """The database is unreachable or not migrated to the code's schema."""


class NotFound(BearwatchError):
    """A site, camera, model or frame named by the user does not exist."""


class AlreadyExists(BearwatchError):
    """A name that must be unique is taken."""


class ModelError(BearwatchError):
    """A model file cannot be registered or loaded (missing, changed, wrong classes)."""


class FrameError(BearwatchError):
    """A frame cannot be captured, decoded or stored."""


class PermissionDenied(BearwatchError):
    """The acting user's role does not allow the action (checked in the services)."""


class InvalidTransition(BearwatchError):
    """A rollout stage change that the state machine does not allow."""


class AlreadyDecided(BearwatchError):
    """A ranger already gave a different verdict on this frame (one verdict per frame and ranger)."""


class InvalidVerdict(BearwatchError):
    """A verdict that does not fit the frame (confirm on a frame the model did not flag, ...)."""


class UndoRefused(BearwatchError):
    """A verdict cannot be undone any more (too old, or its alert was already sent)."""


class GateNotPassed(BearwatchError):
    """A promotion the gate does not allow; ``lines`` has one line per failing or
    inconclusive check (the CLI prints them)."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines
