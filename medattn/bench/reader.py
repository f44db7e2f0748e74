"""Reader-study benchmark: `python -m medattn.bench.reader --help`.

Starts `streamlit run app.py` in study mode on a fresh database holding one detection study,
and has `--readers` readers (default 4) read at once, each in its own context of one headless
Chromium (Playwright, /usr/bin/chromium; nothing is downloaded). Each reader signs in, then per
case ticks "No finding", answers "no" and confidence 2 and presses "Save and next"; the time
from that click until the page shows "Case N saved." with the next case's form is one sample.
Reports the median and 90th percentile over all samples, then the database size per 1,000
answers: the growth of the SQLite file (after a WAL checkpoint) when `--answers` answers are
written directly through `AnnotationStore`, per answer event (the browser run's file size and
events are reported too; with few answers it is mostly the schema).

Figures depend on the machine's load: run it on a quiet machine and say what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from medattn.ui.warmup import READY_PATH

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PASSWORD = "bench-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_study(db: Path, dataset: Path, cases: int, readers: int):
    """A detection study of `cases` test images (with and without a finding) with `readers` readers."""
    from medattn.data import load_dataset
    from medattn.reader.presets import default_questions
    from medattn.store.annotations import AnnotationStore

    store = AnnotationStore(db)
    data = load_dataset(dataset)
    test = data.split("test")
    labelled = test[data.classes].to_numpy().astype(bool).any(axis=1)
    # with and without a finding, alternating: a detection study needs both (medattn.reader.validity)
    pairs = zip(test.index[labelled], test.index[~labelled])
    ids = [i for pair in pairs for i in pair][:cases]
    study_id = store.create_study({"name": "Benchmark", "kind": "detection", "dataset": str(dataset), "cases": ids,
                                   "questions": default_questions("detection"), "seed": 0})
    for number in range(readers):
        store.add_reader(study_id, f"reader{number + 1}", PASSWORD)
    return store, study_id


def db_size(store) -> tuple[int, int]:
    """(bytes of the database file, answer events) after a WAL checkpoint (on a plain sqlite3
    connection: the store opens every transaction with BEGIN IMMEDIATE, inside which SQLite
    refuses a checkpoint)."""
    store.engine.dispose()
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return store.path.stat().st_size, int(events)


async def _settled(page, clicked: bool = False) -> None:
    """Wait until the page's run has finished and no stale element is left: while it runs, the
    previous case's widgets stay on screen, and clicks on them are lost (waiting for their text
    alone timed out the benchmark). `clicked`: just after a click, whose rerun starts a moment
    later (the page still reads as idle then), give it 0.2 s to start."""
    if clicked:
        await page.wait_for_timeout(200)
    await page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    await page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')")


async def _reader(browser, url: str, name: str, cases: int, samples: list[float], timeout_ms: int) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    await page.goto(url)
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("No finding (no boxes)").wait_for()
    await _settled(page)
    for number in range(1, cases + 1):
        await page.get_by_text("No finding (no boxes)").click()
        await _settled(page, clicked=True)  # the tick reruns the page
        await page.get_by_role("radio", name="no", exact=True).click()
        await page.get_by_role("radio", name="2", exact=True).click()
        started = time.perf_counter()
        await page.get_by_role("button", name="Save and next").click()
        await page.get_by_text(f"Case {number} saved.").wait_for()
        await _settled(page)
        samples.append(time.perf_counter() - started)
        await page.wait_for_timeout(300)  # a reader's glance before the next answers
    await context.close()


async def _read_all(url: str, readers: int, cases: int, timeout_ms: int) -> list[float]:
    from playwright.async_api import async_playwright

    samples: list[float] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        await asyncio.gather(*(_reader(browser, url, f"reader{n + 1}", cases, samples, timeout_ms)
                               for n in range(readers)))
        await browser.close()
    return samples


def serve(db: Path, dataset: Path, log) -> tuple[subprocess.Popen, str]:
    return start_app({"MEDATTN_STUDY_DB": str(db), "MEDATTN_DATASET": str(dataset), "OMP_NUM_THREADS": "1"}, log)


def start_app(env: dict[str, str], log) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port with `env` over this environment, its output to
    `log`; (process, URL) once it is healthy and its start-up work is over (warmup.READY_PATH:
    a server is started before its readers come). Also used by medattn.bench.compare."""
    port = _free_port()
    env = {**os.environ, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if (urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
                    and urllib.request.urlopen(f"{url}{READY_PATH}", timeout=2).status == 200):
                return process, url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"streamlit did not start; see {log.name}")


def direct_answers(folder: Path, dataset: Path, answers: int) -> tuple[float, int]:
    """(bytes per 1,000 answers, answers): the growth of the file when `answers` detection
    answers (a box each) are submitted directly, three questions per case and reader."""
    store, study_id = make_study(folder / "direct.sqlite", dataset, cases=10, readers=1)
    empty, _ = db_size(store)
    cases = store.cases_for(study_id, "reader1")
    for number in range(answers // 3):
        store.submit_case(study_id, "reader1", cases[number % len(cases)],
                          {"present": True, "confidence": 4,
                           "boxes": [{"x": 10.0 + number % 50, "y": 20.0, "w": 30.0, "h": 25.0, "label": "finding"}]})
    size, events = db_size(store)
    return (size - empty) / events * 1000, events


def main(argv: list[str] | None = None) -> int:
    # the module docstring says what is measured and how (the first line alone only repeated the command)
    parser = argparse.ArgumentParser(prog="python -m medattn.bench.reader", description=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=4, help="readers reading at once (default 4)")
    parser.add_argument("--cases", type=int, default=10, help="cases each reader answers (default 10)")
    parser.add_argument("--answers", type=int, default=3000,
                        help="answers written directly for the size figure (default 3000)")
    parser.add_argument("--dataset", help="dataset folder (default: the embedded demo)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for any one page step (default 120)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from medattn.data.demo import ensure_demo

    dataset = Path(args.dataset) if args.dataset else ensure_demo()
    with tempfile.TemporaryDirectory(prefix="medattn-bench-reader-") as tmp:
        folder = Path(tmp)
        store, _ = make_study(folder / "studies.sqlite", dataset, args.cases, args.readers)
        with open(folder / "streamlit.log", "w") as log:
            process, url = serve(store.path, dataset, log)
            try:
                samples = asyncio.run(_read_all(url, args.readers, args.cases, int(args.timeout * 1000)))
            finally:
                process.terminate()
                process.wait(timeout=30)
        print(f"submit to next case: median {statistics.median(samples):.2f} s over {len(samples)} samples",
              flush=True)
        size, events = db_size(store)
        direct_per_1000, direct_events = direct_answers(folder, dataset, args.answers)
    figures = {
        "readers": args.readers, "cases_per_reader": args.cases, "samples": len(samples),
        "submit_to_next_case_median_s": statistics.median(samples),
        "submit_to_next_case_p90_s": sorted(samples)[int(0.9 * (len(samples) - 1))],
        "db_bytes_browser_run": size, "browser_run_events": events,
        "db_bytes_per_1000_answers_direct": direct_per_1000, "direct_events": direct_events,
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
