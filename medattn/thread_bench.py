"""Moved to `medattn.bench.threads`; this name still works (`medattn.moved`)."""

from medattn.moved import alias

alias(__name__, "medattn.bench.threads")
