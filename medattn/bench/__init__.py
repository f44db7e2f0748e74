"""Benchmarks, each a command; figures go in the README and the issue notes, never in timed tests.

- `python -m medattn.bench` (`methods`): every explanation method against Captum's call.
- `python -m medattn.bench.compare`: the Compare page in headless Chromium (first panel, grid, ▶).
- `python -m medattn.bench.reader`: reader studies in Chromium (submit → next case).
- `python -m medattn.bench.threads`: the thread policy (threads per process × processes).
"""
