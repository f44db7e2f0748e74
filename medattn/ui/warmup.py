"""The server's start-up work (`lifespan`, app.py): import what the pages import (torch, Plotly,
the explainers), load the dataset and checkpoints a new session opens with into the process's
caches (`medattn.ui.loaders`), run each of those models forward and backward once, count its
multiply-accumulates (`explain.work_size`) and read PDA's reference pool for it, so that the
first Compare grid opens on warm code.

Why: on a 2-core CPU the first visitor's first map came 6.5-7.7 s after the page was opened,
about 5 s of it importing and first calls into torch (`python -m medattn.bench.compare`). The
work runs in a thread while the server already serves: a visitor who comes before it ends sees
the app's menu and its loading spinner (a session asking for the same dataset or model waits
for that one load instead of starting another: `st.cache_resource` computes a value once;
building the demo on a first start takes ~20 s). `READY_PATH` answers 200 once the work is over
(503 before), for a benchmark or a deployment's readiness probe. MEDATTN_WARMUP=0 skips it (e.g.
a server that only runs reader studies on another dataset). Nothing here computes a map, so the
heatmap cache stays as it was. A dataset or checkpoint that fails to load costs itself only (one
line in the server's log; the sidebar says why).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import numpy as np
from starlette.responses import JSONResponse
from starlette.routing import Route

LOG = logging.getLogger("medattn.warmup")
READY_PATH = "/_medattn/ready"
_DONE = threading.Event()  # the start-up work is over (done, failed or skipped)


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
            with loaders.model_lock(loaded.name):  # a visitor may already explain with it (hooks)
                explain(loaded.model, loaded.constant_input(0.5), [0], "saliency", device=loaded.device)
                work_size.macs(loaded.model, loaded.constant_input())  # sizes the first grid's previews
            done["models"].append(loaded.name)
        except Exception as exc:  # noqa: BLE001 - one bad checkpoint must not keep the others cold
            done["failed"][checkpoint.name] = message(exc)
            continue
        try:
            if data is not None:
                pipeline.reference_images(loaded, data)  # every PDA panel's cache key holds this pool
        except Exception as exc:  # noqa: BLE001 - the PDA panels say why
            done["failed"]["PDA's reference images"] = message(exc)
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
        _DONE.set()


async def ready(request: Any) -> JSONResponse:
    """GET READY_PATH: whether the start-up work is over (200) or still running (503)."""
    done = _DONE.is_set()
    return JSONResponse({"ready": done}, status_code=200 if done else 503)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The App's lifespan: start the warm-up thread and serve at once; the server's shutdown
    (Ctrl-C, SIGTERM) ends the warm-up after its current step (the interpreter's exit waits
    for that step)."""
    stop = threading.Event()
    if enabled():
        # not a daemon: a warm-up still inside torch at interpreter exit would abort it
        threading.Thread(target=_warm_logged, args=(stop,), name="medattn-warmup", daemon=False).start()
    else:
        _DONE.set()
    try:
        yield
    finally:
        stop.set()


ROUTES = [Route(READY_PATH, ready, methods=["GET"])]
