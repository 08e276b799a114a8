"""Schedule knobs: a schedule asks the current config for a value, the heuristic being the default.

    cb = knobs.current().choice("cb", (1, 2, 3, 4), default=heuristic_cb)

The default config answers with the default (so untuned code is unchanged) and records every knob
it was asked about: that record is the kernel's search space. A tuning candidate or an applied
record answers with its own value when that value is one of the candidates.
"""

from __future__ import annotations

import contextlib
import contextvars


class Config:
    """Knob values by name; knobs it lacks (or values no longer among the candidates) take the default."""

    def __init__(self, values: dict | None = None):
        self.values = dict(values or {})
        self.space: dict[str, tuple[list, object]] = {}  # name -> (candidates, default), filled as knobs are asked

    def choice(self, name: str, candidates, default):
        cands = list(dict.fromkeys([default, *candidates]))  # the default is always a candidate, listed first
        self.space[name] = (cands, default)
        value = self.values.get(name, default)
        return value if value in cands else default


_CURRENT: contextvars.ContextVar[Config | None] = contextvars.ContextVar("lathe_knobs", default=None)


def current() -> Config:
    """The config of the kernel being scheduled (a fresh default one outside `using`)."""
    return _CURRENT.get() or Config()


@contextlib.contextmanager
def using(cfg: Config):
    token = _CURRENT.set(cfg)
    try:
        yield cfg
    finally:
        _CURRENT.reset(token)
