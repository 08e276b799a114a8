"""The exceptions a user can cause. Each message names the stage, axis, op, shape or limit."""


class LatheError(Exception):
    """Base of every error lathe raises on bad input."""


class ScheduleError(LatheError, ValueError):
    """An invalid schedule: names the stage and the axis."""


class TargetError(LatheError, ValueError):
    """A target string that cannot be parsed, or a target this machine cannot run."""


class BuildError(LatheError):
    """Code generation or compilation of a kernel failed."""


class ArgumentError(LatheError, ValueError):
    """Arguments passed to a compiled kernel do not match its signature."""


class ModelError(LatheError, ValueError):
    """A model lathe cannot compile: unreadable, unsupported operators, bad shapes, cycles."""
