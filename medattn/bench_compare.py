"""Moved to `medattn.bench.compare`; this name still works (`medattn.moved`)."""

from medattn.moved import alias

alias(__name__, "medattn.bench.compare")
