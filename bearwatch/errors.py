"""The error hierarchy: every error a user can cause says what went wrong and what to do."""


class BearwatchError(Exception):
    """Base class; the CLI prints these as one clear line and exits non-zero."""


class ConfigError(BearwatchError):
    """The settings or the park configuration file are invalid."""


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
