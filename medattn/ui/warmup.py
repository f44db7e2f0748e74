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
dataset). Nothing here computes a map, so the heatmap cache stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

LOG = logging.getLogger("medattn.warmup")
WAIT_SECONDS = 60.0


def enabled() -> bool:
    return os.environ.get("MEDATTN_WARMUP", "1") != "0"


def warm() -> dict[str, Any]:
    """Do the start-up work; what was loaded and the seconds each part took. A dataset or
    checkpoint that fails to load is left for the page to report (the sidebar says why)."""
    started = time.perf_counter()
    done: dict[str, Any] = {}
    # The modules the sidebar and the default page import; the sidebar's import brings torch.
    from medattn import pipeline
    from medattn.explain import explain, work_size
    from medattn.ui import background, compare_grid, loaders, sidebar  # noqa: F401 - imported to warm them
    from medattn.viz import grid

    done["imports_s"] = round(time.perf_counter() - started, 2)
    path = sidebar.default_dataset().strip()
    if not path:
        from medattn.data.demo import ensure_demo

        path = str(ensure_demo())
    data = loaders.dataset(path)
    done["dataset"] = data.name
    done["models"] = []
    for checkpoint in sidebar.opening_checkpoints(data):
        loaded = loaders.model(checkpoint, "auto")
        explain(loaded.model, loaded.constant_input(0.5), [0], "saliency", device=loaded.device)
        work_size.macs(loaded.model, loaded.constant_input())  # sizes the first grid's previews
        pipeline.reference_images(loaded, data)  # every PDA panel's cache key holds this pool
        done["models"].append(loaded.name)
    image = data.read_image(data.images.index[0])
    grid.grid_figure([[grid.Panel("warm-up", "image", image, heatmap=image, caption="warm-up")]])
    background.worker()
    done["seconds"] = round(time.perf_counter() - started, 2)
    return done


def _warm_logged() -> None:
    # The caches' spinners look for a page to draw on: there is none here, and that is fine.
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        done = warm()
        print(f"  medattn warmed up in {done['seconds']} s: dataset {done['dataset']}, "
              f"checkpoints {', '.join(done['models']) or 'none'}", flush=True)
    except Exception:  # noqa: BLE001 - the pages load what failed and say why
        LOG.exception("medattn: warm-up failed; the first page load does this work instead")
    finally:
        quiet.setLevel(level)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The App's lifespan: warm up (in a thread, up to WAIT_SECONDS) before serving."""
    if enabled():
        # not a daemon: a warm-up still inside torch at interpreter exit would abort it
        thread = threading.Thread(target=_warm_logged, name="medattn-warmup", daemon=False)
        thread.start()
        await asyncio.to_thread(thread.join, WAIT_SECONDS)
    yield
