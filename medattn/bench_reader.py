"""Moved to `medattn.bench.reader`; this name still works (`medattn.moved`)."""

from medattn.moved import alias

alias(__name__, "medattn.bench.reader")
