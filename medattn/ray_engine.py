"""Moved to `medattn.jobs.ray_engine`; this name still works (`medattn.moved`)."""

from medattn.moved import alias

alias(__name__, "medattn.jobs.ray_engine")
