"""Moved to `medattn.jobs.precompute`; this name still works (`medattn.moved`)."""

from medattn.moved import alias

alias(__name__, "medattn.jobs.precompute")
