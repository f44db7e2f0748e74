"""Compare-page benchmark in headless Chromium: `python -m medattn.bench.compare --help`.

Starts `streamlit run app.py` on a dataset (default: the embedded demo) with a fresh, empty cache
folder (MEDATTN_CACHE in a temporary folder: no map, prediction or score from before) and a
checkpoint folder holding only `--models` (links to them), then drives the Compare page in
headless Chromium (Playwright, /usr/bin/chromium; nothing is downloaded) as a reader would:

1. cold grid: open the app on Compare (the first image of the page's default filters, or
   `--image`) and wait until every panel has its map;
2. ▶: look at the image for `--dwell` seconds (meanwhile the app computes the neighbours' maps:
   medattn/ui/background.py), press ▶ and wait for the next image's grid; `--next` times;
3. new target class: after the same look, choose the next class in the Target class box;
4. `--users N` (optional): on a second freshly started server with its own empty cache, N
   browser contexts open the app at once, each on a different test image (`?image=ID`), and
   each one's cold grid is timed.

`--image` and `--users` open the app by a link, which starts a new session with the sidebar's
first choice, so they need `--models`/`--methods` to be that choice (the defaults are).

The clock runs from the navigation or click, and three times are read off it: the first panel
showing a map (a final map, or a preview of a slow method labelled "preview"; in a session's
first grid also the still image shown until its final grid, once it has loaded and its caption
counts a panel with a map: medattn.ui.quick_view), every panel
showing one (no "computing…" left), and every map final: the page's status line reads "K of K
maps ready (… from the cache) for IMAGE, target CLASS" for the image and class expected (the
page writes it once the final grid has been sent; a new run clears it at once) and the grid's
figure holds K panel captions and no "computing…" or preview. The first two count only once the
page shows the expected image and no status line of another grid. When the sidebar's first choice of checkpoints or
methods is not the one asked for, the sidebar is set on the Models page first and the cold
clock starts at the click on Compare (the JSON says so: the models are then already loaded).

Prints a table, writes JSON (`--out`) with the machine's load average at start and end, and
saves screenshots of the grids (`--screenshots`). Figures depend on the machine's load: run it
on a quiet machine and say what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medattn.bench.reader import ARGS, CHROMIUM, REPO, start_app

DEFAULT_MODELS = ("demo_resnet18_wildcat", "demo_resnet18_linear")
DEFAULT_METHODS = ("saliency", "integrated_gradients", "pda", "wildcat")
READY = re.compile(r"^(\d+) of (\d+) maps ready \((\d+) from the cache\) for (\S+), target (.+?)"
                   r"(?: · (\d+) failed.*)?$")
QUICK = re.compile(r"(\d+) of (\d+) panels show a map")  # medattn.ui.quick_view's still image of a session's first grid
# Everything the clock needs from the page in one call: the live status lines, the grid figure's
# panel titles, and any exception shown.
PROBE = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const live = e => !e.closest('[data-stale="true"]');
  const captions = [...main.querySelectorAll('[data-testid="stCaptionContainer"]')].filter(live)
    .map(e => e.innerText.trim());
  return {
    status: captions.filter(t => t.includes(' maps ready (')),
    image: (captions.find(t => t.includes(' · split ')) || '').split(' · ')[0],
    titles: [...main.querySelectorAll('.js-plotly-plot .annotation-text')].filter(live).map(e => e.textContent),
    quick: [...main.querySelectorAll('[data-testid="stImage"]')].filter(live)
      .filter(e => e.querySelector('img') && e.querySelector('img').complete && e.querySelector('img').naturalWidth > 0)
      .map(e => e.innerText.trim()).filter(t => t.includes(' panels show a map')),
    errors: [...main.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText.slice(0, 500)),
  };
}"""


STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line, with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


class PageError(RuntimeError):
    """The page showed an exception, or the grid did not finish in time."""


@dataclass
class View:
    """One timed grid: what was asked (how), what the page showed, and the seconds it took."""

    step: str
    image_id: str
    target: str
    seconds: float  # every map final
    maps: int
    cached: int
    failed: int = 0
    load_average: list[float] = field(default_factory=list)
    first_s: float | None = None  # the first panel showing a map (final or preview)
    all_shown_s: float | None = None  # every panel showing a map (final or preview)
    previews: int = 0  # panels seen as previews on the way


def _shown(title: str) -> bool:
    """A panel title of a panel that shows a map (a final map's scores, a preview) or says why not."""
    return "p=" in title or "preview" in title or "failed" in title


async def wait_grid(page, accept, timeout_s: float, started: float, poll_s: float = 0.1) -> tuple:
    """Until a complete grid that `accept(image_id, target)` is shown: (image, target, maps,
    cached, failed, seconds to the first panel with a map, to every panel with one, previews
    seen), times from `started` (perf_counter). Raises PageError on an exception on the page or
    after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: dict = {}
    first = every = None
    previews: set[int] = set()
    while time.monotonic() < deadline:
        last = await page.evaluate(PROBE)
        now = round(time.perf_counter() - started, 2)
        if last["errors"]:
            raise PageError(f"the page shows an exception: {last['errors'][0]}")
        titles = last["titles"]
        other_grid = any((found := READY.match(line)) is not None and not accept(found[4], found[5])
                         for line in last["status"])
        quick = [(int(m[1]), int(m[2])) for m in map(QUICK.search, last["quick"]) if m]
        if last["image"] and accept(last["image"], None) and not other_grid and quick:
            if first is None and quick[0][0] > 0:
                first = now
            if every is None and quick[0][0] == quick[0][1]:
                every = now
        if last["image"] and accept(last["image"], None) and not other_grid and titles:
            if first is None and any(_shown(t) for t in titles):
                first = now
            if every is None and all(_shown(t) for t in titles) and not any("computing…" in t for t in titles):
                every = now
            previews |= {i for i, t in enumerate(titles) if "preview" in t}
        for line in last["status"]:
            found = READY.match(line)
            if found is None or not accept(found[4], found[5]):
                continue
            ready, total, cached = int(found[1]), int(found[2]), int(found[3])
            captions = sum("p=" in t for t in titles)
            if captions >= ready and not any("computing…" in t or "preview" in t for t in titles):
                return (found[4], found[5], ready, cached, total - ready, first if first is not None else now,
                        every if every is not None else now, len(previews))
        await asyncio.sleep(poll_s)
    raise PageError(f"no complete grid within {timeout_s:.0f} s; the page's status lines: {last.get('status')}")


async def timed(page, step: str, action, accept, timeout_s: float) -> View:
    started = time.perf_counter()
    await action()
    image_id, target, maps, cached, failed, first, every, previews = await wait_grid(page, accept, timeout_s, started)
    view = View(step, image_id, target, round(time.perf_counter() - started, 2), maps, cached, failed,
                [round(x, 2) for x in os.getloadavg()], first, every, previews)
    say(f"{step}: first map {first:.2f} s, every panel {every:.2f} s ({previews} previews), all final "
        f"{view.seconds:.2f} s ({image_id}, target {target}, {maps} maps, {cached} from the cache)")
    return view


async def shot(page, folder: Path | None, name: str) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def wait_idle(page, timeout_s: float, quiet_s: float = 1.0) -> None:
    """Until no script run has been going for `quiet_s` (Streamlit's running icon is gone)."""
    running = page.get_by_test_id("stStatusWidgetRunningIcon").or_(page.get_by_test_id("stStatusWidgetRunningManIcon"))
    deadline, quiet_since = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if await running.count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        await asyncio.sleep(0.1)
    raise PageError("the app kept running")


async def sidebar_choice(page) -> tuple[list[str], list[str]]:
    """(checkpoints pressed in the sidebar's pills, methods chosen in its multiselect)."""
    sidebar = page.get_by_test_id("stSidebar")
    pressed = sidebar.get_by_test_id("stButtonGroup").locator("button[aria-pressed='true']")
    chips = sidebar.get_by_test_id("stMultiSelect").filter(has_text="Methods").locator("[data-tag]")
    return ([t.strip() for t in await pressed.all_inner_texts()],
            [t.strip() for t in await chips.all_inner_texts()])


async def set_sidebar(page, models: list[str], methods: list[str], timeout_s: float) -> None:
    """Press and release checkpoint pills and edit the Methods box until the sidebar chooses
    exactly `models` and `methods` (in that method order), waiting for each rerun."""
    sidebar = page.get_by_test_id("stSidebar")
    pills = sidebar.get_by_test_id("stButtonGroup")
    box = sidebar.get_by_test_id("stMultiSelect").filter(has_text="Methods")
    await box.get_by_role("combobox").wait_for()  # the sidebar's last widget: drawn once its models are loaded
    chosen, _ = await sidebar_choice(page)
    for name in sorted(set(chosen) ^ set(models)):
        await pills.get_by_role("button", name=name, exact=True).click()
        await wait_idle(page, timeout_s)
        await box.get_by_role("combobox").wait_for()
    _, current = await sidebar_choice(page)
    if current != list(methods):
        if current:
            await box.get_by_role("button", name="Clear all").click()
            await wait_idle(page, timeout_s)
        field_ = box.get_by_role("combobox")
        for method in methods:
            await field_.click()
            await field_.fill(method)
            await page.get_by_role("option", name=method, exact=True).click()
        await field_.press("Escape")
        await wait_idle(page, timeout_s)
    chosen, current = await sidebar_choice(page)
    if sorted(chosen) != sorted(models) or current != list(methods):
        raise PageError(f"could not set the sidebar: checkpoints {chosen}, methods {current}")


def preset(checkpoints: Path, models: list[str], methods: list[str]) -> bool:
    """Whether a fresh session's sidebar already chooses `models` and `methods` (from the
    sidebar's own defaults)."""
    import logging

    from medattn.inference import list_checkpoints
    from medattn.ui.methods import DEFAULT_METHODS as SIDEBAR_METHODS

    # the sidebar's caches, made outside a Streamlit run, warn that they keep to memory
    logging.disable(logging.WARNING)
    try:
        from medattn.ui.sidebar import default_checkpoints
    finally:
        logging.disable(logging.NOTSET)

    return (sorted(default_checkpoints(list_checkpoints(checkpoints))) == sorted(models)
            and list(SIDEBAR_METHODS) == list(methods))


async def new_page(browser, timeout_s: float):
    context = await browser.new_context(viewport={"width": 1500, "height": 1800})
    page = await context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    return context, page


def _next_class(classes: list[str], current: str) -> str:
    return classes[(classes.index(current) + 1) % len(classes)] if current in classes else classes[0]


async def single_user(browser, url: str, args, classes: list[str], ready_made: bool, record: dict) -> None:
    """Cold grid, ▶ × args.next and a new target class for one reader; views go into
    record["views"] as they are timed (kept when a later step fails)."""
    views: list[View] = record.setdefault("views", [])
    context, page = await new_page(browser, args.timeout)
    link = f"{url}/?image={args.image}" if args.image else f"{url}/"
    want_image = (lambda image, target: image == args.image) if args.image else (lambda image, target: True)
    try:
        if ready_made:
            record["cold_from"] = "navigation to the app on a freshly started server"
            cold = await timed(page, "cold", lambda: page.goto(link), want_image, args.timeout)
        else:
            record["cold_from"] = ("click on Compare after setting the sidebar on the Models page "
                                   "(the models were already loaded)")
            await page.goto(f"{url}/models")
            await page.get_by_text("Your models in").first.wait_for()
            await wait_idle(page, args.timeout)
            await set_sidebar(page, args.models, args.methods, args.timeout)
            say("sidebar set on the Models page")
            nav = page.get_by_test_id("stTopNavLink").filter(has_text="Compare")
            cold = await timed(page, "cold", nav.click, want_image, args.timeout)
        views.append(cold)
        await shot(page, args.screenshots, "cold")
        current = cold
        for number in range(1, args.next + 1):
            await asyncio.sleep(args.dwell)
            previous = current.image_id
            next_button = page.locator(".st-key-cmp_next").get_by_role("button", name="▶", exact=True)
            current = await timed(page, f"next {number}", next_button.click,
                                  lambda image, target: image != previous, args.timeout)
            views.append(current)
        await asyncio.sleep(args.dwell)
        target = _next_class(classes, current.target)

        async def choose_target() -> None:
            await page.locator(".st-key-cmp_target").get_by_role("combobox").click()
            await page.get_by_role("option", name=target, exact=True).click()

        image_id = current.image_id
        views.append(await timed(page, "new target", choose_target,
                                 lambda image, shown: image == image_id and shown in (target, None), args.timeout))
        await shot(page, args.screenshots, "final")
    except Exception:
        await shot(page, args.screenshots, "single_user_failed")
        raise
    finally:
        await context.close()


async def one_of_many(browser, url: str, number: int, image_id: str, args, views: list[View]) -> None:
    context, page = await new_page(browser, args.timeout)
    try:
        view = await timed(page, f"user {number}", lambda: page.goto(f"{url}/?image={image_id}"),
                           lambda image, target: image == image_id, args.timeout)
        views.append(view)
        await shot(page, args.screenshots, f"user_{number}")
    except Exception:
        await shot(page, args.screenshots, f"user_{number}_failed")
        raise
    finally:
        await context.close()


async def _browse(job) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            await job(browser)
        finally:
            await browser.close()


def spread_images(dataset: Path, users: int, gap: int = 3) -> list[str]:
    """`users` test images, positive ones first, at least `gap` apart in the test split's order
    (a deep link opens the whole split; ▶'s prefetch takes the next and previous), so no user's
    image is another's prefetched neighbour; closer when the split is too small for that."""
    from medattn.data import load_dataset

    data = load_dataset(dataset)
    test = data.split("test")
    positive = test[data.classes].astype(bool).any(axis=1).to_numpy()
    for spacing in range(gap, 0, -1):
        for only_positive in (True, False):
            chosen, last = [], -spacing
            for position, image_id in enumerate(test.index):
                if position - last >= spacing and (positive[position] or not only_positive):
                    chosen.append(str(image_id))
                    last = position
            if len(chosen) >= users:
                return chosen[:users]
    raise SystemExit(f"the test split has {len(test)} images, fewer than the {users} users")


def link_checkpoints(source: Path, models: list[str], folder: Path) -> None:
    """A checkpoint folder holding only `models` (links to NAME.json and NAME.safetensors)."""
    folder.mkdir(parents=True)
    for name in models:
        for suffix in (".json", ".safetensors"):
            target = (source / name).with_name(name + suffix).resolve()
            if not target.is_file():
                raise SystemExit(f"checkpoint {name}: {target} not found (use --checkpoints FOLDER)")
            (folder / target.name).symlink_to(target)


class Server:
    """The app on a free port with `env`; stopped (and its log tail kept) on exit."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path

    def __enter__(self) -> str:
        self.log = open(self.log_path, "w")
        started = time.perf_counter()
        self.process, url = start_app(self.env, self.log)
        self.start_seconds = round(time.perf_counter() - started, 2)
        say(f"app started at {url} in {self.start_seconds:.1f} s")
        return url

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a map job at work that ticks no progress
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()
        say("app stopped")

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def table(views: list[dict]) -> str:
    lines = [f"{'step':<12} {'image':<22} {'target':<14} {'maps':>4} {'cached':>6} {'first':>6} {'every':>6} "
             f"{'final':>7}  load (1 min)"]
    for v in views:
        lines.append(f"{v['step']:<12} {v['image_id']:<22} {v['target']:<14} {v['maps']:>4} {v['cached']:>6} "
                     f"{v['first_s']:>6.2f} {v['all_shown_s']:>6.2f} {v['seconds']:>7.2f}  {v['load_average'][0]:.2f}"
                     + (f"  {v['failed']} failed" if v["failed"] else ""))
    return "\n".join(lines) + "\nfirst: a panel shows a map (final or preview); every: all panels do; final: all maps final (s)"


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.bench.compare", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="checkpoint names in --checkpoints")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--checkpoints", type=Path,
                        help="checkpoint folder (default: MEDATTN_CHECKPOINTS or checkpoints/)")
    parser.add_argument("--dataset", type=Path, help="dataset folder (default: the embedded demo)")
    parser.add_argument("--image", help="image id of the cold grid (default: the first of the page's default filters)")
    parser.add_argument("--dwell", type=float, default=10.0, help="seconds the reader looks before ▶ or a new class")
    parser.add_argument("--next", type=int, default=3, help="how many times to press ▶")
    parser.add_argument("--users", type=int, default=0, help="also time N users' cold grids at once on a fresh server")
    parser.add_argument("--threads", type=int, help="MEDATTN_THREADS for the app (default: its thread policy)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for any one grid")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench_compare.json")
    parser.add_argument("--screenshots", type=Path, help="save the grids' screenshots in this folder")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    if len(set(args.models)) != len(args.models) or len(set(args.methods)) != len(args.methods):
        parser.error("name each model and method once")
    from medattn.explain import METHODS
    from medattn.inference import CHECKPOINT_DIR

    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    dataset = (args.dataset or _demo_dataset()).resolve()
    from medattn.data import load_dataset

    data = load_dataset(dataset)
    classes = list(data.classes)
    if args.image and args.image not in data.images.index:
        parser.error(f"{data.name} has no image {args.image!r}")
    images = spread_images(dataset, args.users) if args.users else []
    load_start = [round(x, 2) for x in os.getloadavg()]
    figures: dict = {
        "models": args.models, "methods": args.methods, "dataset": str(dataset), "dwell_s": args.dwell,
        "next_presses": args.next, "users": args.users, "commit": _commit(), "cpus": os.cpu_count(),
        "threads": args.threads or os.environ.get("MEDATTN_THREADS"),
        "prefetch": os.environ.get("MEDATTN_PREFETCH", "1") != "0",
        "load_average_start": load_start, "errors": [],
    }
    with tempfile.TemporaryDirectory(prefix="medattn-bench-compare-") as tmp:
        folder = Path(tmp)
        link_checkpoints((args.checkpoints or CHECKPOINT_DIR).resolve(), args.models, folder / "checkpoints")
        ready_made = preset(folder / "checkpoints", args.models, args.methods)
        if (args.image or args.users) and not ready_made:  # a link opens a new session: the sidebar's defaults
            parser.error("--image and --users need the sidebar's first choice of checkpoints and methods "
                         f"({', '.join(DEFAULT_METHODS)} and the linear and WILDCAT heads' checkpoints)")
        base_env = {"MEDATTN_DATASET": str(dataset), "MEDATTN_CHECKPOINTS": str(folder / "checkpoints")}
        if args.threads:
            base_env["MEDATTN_THREADS"] = str(args.threads)

        record: dict = {}
        server = Server({**base_env, "MEDATTN_CACHE": str(folder / "cache")}, folder / "streamlit.log")
        try:
            with server as url:
                figures["server_start_s"] = server.start_seconds
                asyncio.run(_browse(lambda browser: single_user(browser, url, args, classes, ready_made, record)))
        except Exception as exc:  # noqa: BLE001 - reported with the figures measured so far
            figures["errors"].append(f"single user: {type(exc).__name__}: {exc}")
            print(f"single user failed: {exc}\n--- streamlit log ---\n{server.tail()}", file=sys.stderr, flush=True)
        figures["cold_from"] = record.get("cold_from")
        views = [asdict(v) for v in record.get("views", [])]
        if args.users:
            users: list[View] = []
            crowd = Server({**base_env, "MEDATTN_CACHE": str(folder / "cache_users")}, folder / "streamlit_users.log")
            try:
                with crowd as url:
                    async def all_users(browser) -> None:
                        await asyncio.gather(*(one_of_many(browser, url, n + 1, image, args, users)
                                               for n, image in enumerate(images)))

                    asyncio.run(_browse(all_users))
            except Exception as exc:  # noqa: BLE001
                figures["errors"].append(f"users: {type(exc).__name__}: {exc}")
                print(f"users failed: {exc}\n--- streamlit log ---\n{crowd.tail()}", file=sys.stderr, flush=True)
            views += [asdict(v) for v in sorted(users, key=lambda v: int(v.step.split()[1]))]
    figures["views"] = views
    by_step = {v["step"]: v["seconds"] for v in views}
    nexts = [v["seconds"] for v in views if v["step"].startswith("next ")]
    shown = {v["step"]: (v["first_s"], v["all_shown_s"]) for v in views}
    figures.update({
        "cold_first_s": shown.get("cold", (None, None))[0], "cold_all_shown_s": shown.get("cold", (None, None))[1],
        "next_all_shown_s": [v["all_shown_s"] for v in views if v["step"].startswith("next ")],
        "cold_grid_s": by_step.get("cold"), "next_s": nexts,
        "next_median_s": statistics.median(nexts) if nexts else None,
        "new_target_s": by_step.get("new target"),
        "users_cold_s": [v["seconds"] for v in views if v["step"].startswith("user ")],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    })
    print(table(views))
    if nexts:
        print(f"▶ median {figures['next_median_s']:.2f} s over {len(nexts)}")
    print(f"load average (1, 5, 15 min): start {load_start}, end {figures['load_average_end']}; {os.cpu_count()} CPUs")
    for error in figures["errors"]:
        print(f"error: {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(f"figures: {args.out}")
    return 1 if figures["errors"] else 0


def _demo_dataset() -> Path:
    from medattn.data.demo import ensure_demo

    return ensure_demo()


if __name__ == "__main__":
    raise SystemExit(main())
