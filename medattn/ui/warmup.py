"""The server's start-up work (`lifespan`, app.py): before the first visitor is served, import
what the pages import (torch, Plotly, the explainers), load the dataset and checkpoints a new
session opens with into the process's caches (`medattn.ui.loaders`), run each of those
models forward and backward once and read PDA's reference pool for each, so that the first Compare grid opens on warm code.

Why: on a 2-core CPU the first visitor's first map came 6.5-7.7 s after the page was opened,
about 5 s of it importing and first calls into torch (`python -m medattn.bench.compare`). The
server waits for this work up to `WAIT_SECONDS` before it serves (a long demo build or a large
dataset then finishes in the background, and a session asking for the same dataset or model
waits for that one load instead of starting another: `st.cache_resource` computes a value
once). MEDATTN_WARMUP=0 skips it (e.g. a server that only runs reader studies on another
dataset). Nothing here computes a map, so the heatmap cache stays as it was. A dataset or
checkpoint that fails to load costs itself only (one line in the server's log; the sidebar says
why); a server stopped during the warm-up (Ctrl-C, SIGTERM) exits once the current step ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from typing import Any, AsyncIterator, Iterator

import numpy as np

LOG = logging.getLogger("medattn.warmup")
WAIT_SECONDS = 60.0


def enabled() -> bool:
    return os.environ.get("MEDATTN_WARMUP", "1") != "0"


def warm(stop: threading.Event | None = None) -> dict[str, Any]:
    """Do the start-up work; what was loaded, what failed (`failed`: name → why) and the seconds
    it took. A dataset or checkpoint that fails to load costs itself only: the others still warm,
    and the page says why it failed (the sidebar). Once `stop` is set (the server is shutting
    down) the work ends after its current step (`stopped`), so a stop waits for one step, not
    all of them; building the demo on a first start is one step."""
    from medattn.ui.errors import message

    stop = stop or threading.Event()
    started = time.perf_counter()
    done: dict[str, Any] = {"dataset": None, "models": [], "failed": {}, "stopped": False}

    def finished(stopped: bool = False) -> dict[str, Any]:
        done["stopped"] = stopped
        done["seconds"] = round(time.perf_counter() - started, 2)
        return done

    # The modules the sidebar and the default page import; the sidebar's import brings torch.
    from medattn import pipeline
    from medattn.explain import explain, work_size
    from medattn.ui import background, compare_grid, loaders, sidebar  # noqa: F401 - imported to warm them
    from medattn.viz import grid

    done["imports_s"] = round(time.perf_counter() - started, 2)
    if stop.is_set():
        return finished(stopped=True)
    path = sidebar.default_dataset().strip()
    data = None
    try:
        if not path:
            from medattn.data.demo import ensure_demo

            path = str(ensure_demo())
        data = loaders.dataset(path)
        done["dataset"] = data.name
    except Exception as exc:  # noqa: BLE001 - the sidebar shows it to the visitor
        done["failed"][path or "the demo dataset"] = message(exc)
    for checkpoint in sidebar.opening_checkpoints(data):
        if stop.is_set():
            return finished(stopped=True)
        try:
            loaded = loaders.model(checkpoint, "auto")
            explain(loaded.model, loaded.constant_input(0.5), [0], "saliency", device=loaded.device)
            work_size.macs(loaded.model, loaded.constant_input())  # sizes the first grid's previews
            if data is not None:
                pipeline.reference_images(loaded, data)  # every PDA panel's cache key holds this pool
            done["models"].append(loaded.name)
        except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not keep the others cold
            done["failed"][checkpoint.name] = message(exc)
    if stop.is_set():
        return finished(stopped=True)
    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    grid.grid_figure([[grid.Panel("warm-up", "image", image, heatmap=image, caption="warm-up")]])
    background.worker()
    return finished()


def _warm_logged(stop: threading.Event) -> None:
    # The caches' spinners look for a page to draw on: there is none here, and that is fine.
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        done = warm(stop)
        print(f"  medattn warmed up in {done['seconds']} s" + (" (stopped: the server is shutting down)"
              if done["stopped"] else "") + f": dataset {done['dataset'] or 'none'}, "
              f"checkpoints {', '.join(done['models']) or 'none'}", flush=True)
        for name, why in done["failed"].items():
            print(f"  medattn warm-up: {name} not loaded (the page says so too): {why}", flush=True)
    except Exception:  # noqa: BLE001 - the pages load what failed and say why
        LOG.exception("medattn: warm-up failed; the first page load does this work instead")
    finally:
        quiet.setLevel(level)


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    """While it lasts, SIGINT and SIGTERM also set `stop`, then do what they did before: the
    server (uvicorn) only notes them until its start-up, the wait for the warm-up included, is
    over, so without this a Ctrl-C waited for the whole warm-up (a first start's demo build and
    every model: 20 s here)."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous: dict[int, Any] = {}

    def handler(number: int, frame: Any) -> None:
        stop.set()
        before = previous[number]
        if callable(before):
            before(number, frame)
        else:  # the default action (or none): as if we had never been here
            signal.signal(number, before)
            signal.raise_signal(number)

    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, before in previous.items():
            if signal.getsignal(number) is handler:
                signal.signal(number, before)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The App's lifespan: warm up (in a thread, up to WAIT_SECONDS) before serving; a stop
    (Ctrl-C, SIGTERM, the server shutting down) ends the warm-up after its current step."""
    if not enabled():
        yield
        return
    # not a daemon: a warm-up still inside torch at interpreter exit would abort it
    stop = threading.Event()
    thread = threading.Thread(target=_warm_logged, args=(stop,), name="medattn-warmup", daemon=False)
    thread.start()
    try:
        with _signals_stop(stop):
            await asyncio.to_thread(thread.join, WAIT_SECONDS)
        yield
    finally:  # the interpreter's exit waits for the thread
        stop.set()
