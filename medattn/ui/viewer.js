// medattn case viewer (Streamlit components v2): one case's image and maps in linked viewports
// with the habits radiologists bring from OHIF / Cornerstone. Self-contained: no libraries, no
// network; the pixels arrive zlib-compressed in `data` and are decoded with DecompressionStream.
//
// Mouse: left = active tool (W/L, zoom, pan, box), middle = pan, right = zoom, wheel = zoom at
// the pointer, double-click = fit. Keys (pointer over the viewer, or after a click on it):
// 1-5 window presets, w W/L, z zoom tool, +/- zoom in/out, p pan, i invert, space reset,
// m map on/off, b box tool, Ctrl+Z undo / Ctrl+Y redo (boxes), Delete removes the chosen box,
// Esc drops the choice. Boxes are kept in stored-image pixels, the frame of the `boxes` answer.

const VIEWERS = new WeakMap();
const PREFS = "medattn.viewer.v1";
const BOX_COLOUR = "#ffd400";
const CHOSEN_COLOUR = "#00e5ff";

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

function esc(text) {  // names from studies are text, never markup
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

async function inflate(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function decodePixels(spec) {
  const raw = await inflate(spec.b64);
  if (spec.bits === 16) {
    const out = new Uint16Array(raw.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = raw[2 * i] | (raw[2 * i + 1] << 8);
    return out;
  }
  return raw;
}

function typing(element) {
  // A text box the reader is writing in keeps the keys; a chooser (Streamlit's selectbox is a
  // combobox input), a button or a slider does not: "3" over the image must not search the studies.
  if (!element) return false;
  if (element.tagName === "TEXTAREA" || element.isContentEditable) return true;
  if (element.tagName !== "INPUT" || element.getAttribute("role") === "combobox" || element.readOnly) return false;
  return ["text", "search", "email", "password", "number", "url", "tel"].includes(element.type || "text");
}

function loadPrefs() {
  try { return JSON.parse(window.localStorage.getItem(PREFS) || "{}"); } catch (e) { return {}; }
}

class Viewer {
  constructor(parent) {
    this.parent = parent;
    const prefs = loadPrefs();
    this.view = { zoom: 1, panX: 0, panY: 0, center: 0.5, width: 1, invert: false, preset: 0 };
    if (typeof prefs.center === "number") Object.assign(this.view, { center: prefs.center, width: prefs.width,
      invert: !!prefs.invert, preset: prefs.preset ?? -1 });
    this.opacity = typeof prefs.opacity === "number" ? prefs.opacity : null;
    this.colormap = prefs.colormap || null;
    this.showMap = prefs.showMap !== false;
    this.tool = null;
    this.boxes = [];
    this.chosen = -1;
    this.undo = [];
    this.redo = [];
    this.version = null;
    this.caseKey = null;
    this.imageId = null;
    this.pixels = null;
    this.maps = {};
    this.drag = null;
    this.cursor = null;
    this.frame = 0;
    this.seq = 0;  // edits sent to the page
    this.build();
  }

  build() {
    const root = document.createElement("div");
    root.className = "mv";
    root.tabIndex = 0;
    root.setAttribute("role", "application");
    root.setAttribute("aria-label", "Case image viewer: keys 1 to 5 window presets, i invert, z zoom, plus and minus, space reset");
    root.innerHTML = `
      <div class="mv-bar">
        <span class="mv-group mv-tools"></span>
        <span class="mv-group mv-presets"></span>
        <span class="mv-group"><button data-act="invert" title="Invert (i)">Invert <kbd>i</kbd></button>
          <button data-act="reset" title="Reset window, zoom and pan (space)">Reset <kbd>␣</kbd></button></span>
        <span class="mv-group mv-boxctl"><button data-act="undo" title="Undo (Ctrl+Z)">Undo <kbd>Ctrl Z</kbd></button>
          <label class="mv-label">Finding <select class="mv-finding"></select></label></span>
        <span class="mv-group mv-mapctl"><label><input type="checkbox" class="mv-showmap"> Map <kbd>m</kbd></label>
          <label>Opacity <input type="range" class="mv-opacity" min="0" max="1" step="0.05"></label>
          <select class="mv-cmap" title="Colour map"></select></span>
      </div>
      <div class="mv-grid"></div>
      <div class="mv-help">Drag: active tool · middle-drag: pan · right-drag or wheel: zoom · double-click: fit ·
        <kbd>1</kbd>–<kbd>5</kbd> window presets · <kbd>w</kbd> W/L · <kbd>z</kbd> zoom · <kbd>+</kbd>/<kbd>−</kbd> ·
        <kbd>p</kbd> pan · <kbd>i</kbd> invert · <kbd>space</kbd> reset · <kbd>m</kbd> map</div>`;
    this.parent.appendChild(root);
    this.root = root;
    this.grid = root.querySelector(".mv-grid");
    root.addEventListener("keydown", (e) => this.key(e));
    const claim = () => {  // the keys act while the pointer is over the viewer, unless the reader is typing text
      if (this.parent.activeElement === root || root.contains(this.parent.activeElement || null)) return;
      if (!typing(document.activeElement)) root.focus({ preventScroll: true });
    };
    root.addEventListener("pointerenter", claim);
    root.addEventListener("pointermove", claim);
    root.querySelector(".mv-bar").addEventListener("click", (e) => this.barClick(e));
    root.querySelector(".mv-showmap").addEventListener("change", (e) => { this.showMap = e.target.checked; this.changed(); });
    root.querySelector(".mv-opacity").addEventListener("input", (e) => { this.opacity = Number(e.target.value); this.changed(); });
    root.querySelector(".mv-cmap").addEventListener("change", (e) => { this.colormap = e.target.value; this.changed(); });
    this.resizer = new ResizeObserver(() => this.layout());
    this.resizer.observe(root);
  }

  destroy() {
    this.resizer.disconnect();
    this.root.remove();
    VIEWERS.delete(this.parent);
  }

  // ---- data from Python ------------------------------------------------------------------
  async update(data) {
    this.data = data;
    const caseChanged = data.case !== this.caseKey;
    if (caseChanged) {
      this.caseKey = data.case;
      Object.assign(this.view, { zoom: 1, panX: 0, panY: 0 });
      this.undo = [];
      this.redo = [];
      this.chosen = -1;
      this.version = null;
      this.seq = 0;
    }
    // Boxes: the page's list is adopted when its version changes, unless it predates an edit made
    // here that the page has not acknowledged yet (the run that carries an edit renders the old list).
    if (data.version !== this.version && (data.ack || 0) >= this.seq) {
      const incoming = (data.boxes || []).map((b) => ({ ...b }));
      if (this.version !== null && data.source === "page" && JSON.stringify(incoming) !== JSON.stringify(this.boxes)) {
        this.undo.push(this.boxes);
        this.redo = [];
      }
      this.boxes = incoming;
      this.version = data.version;
    }
    if (this.tool === null || (this.tool === "box" && !data.editable)) this.tool = data.editable ? "box" : "wl";
    if (this.opacity === null) this.opacity = data.opacity;
    if (!this.colormap || !(this.colormap in data.colormaps)) this.colormap = data.colormap;
    this.controls();
    if (data.image.id !== this.imageId) {
      this.imageId = data.image.id;
      this.pixels = null;
      this.root.dataset.ready = "0";
      const id = data.image.id;
      const pixels = await decodePixels(data.image);
      const maps = {};
      for (const panel of data.panels) if (panel.map) maps[panel.id] = await decodePixels(panel.map);
      if (id !== this.imageId) return;  // a newer case arrived meanwhile
      this.pixels = pixels;
      this.maps = maps;
      if (this.view.preset >= 0 && data.presets[this.view.preset]) this.applyPreset(this.view.preset, false);
    }
    this.layout();
    this.root.dataset.ready = "1";
  }

  controls() {
    const d = this.data;
    const tools = [["wl", "W/L", "w"], ["zoom", "Zoom", "z"], ["pan", "Pan", "p"]];
    if (d.editable) tools.push(["box", "Box", "b"]);
    this.root.querySelector(".mv-tools").innerHTML = tools.map(([id, name, k]) =>
      `<button data-tool="${id}" class="${this.tool === id ? "on" : ""}" title="${name} (${k})">${name} <kbd>${k}</kbd></button>`).join("");
    this.root.querySelector(".mv-presets").innerHTML = d.presets.map((p, i) =>
      `<button data-preset="${i}" class="${this.view.preset === i ? "on" : ""}" title="${esc(p.name)}: W ${p.width.toFixed(2)} L ${p.center.toFixed(2)} (${i + 1})"><kbd>${i + 1}</kbd> ${esc(p.name)}</button>`).join("");
    this.root.querySelector('[data-act="invert"]').classList.toggle("on", this.view.invert);
    const boxctl = this.root.querySelector(".mv-boxctl");
    boxctl.style.display = d.editable ? "" : "none";
    const finding = this.root.querySelector(".mv-finding");
    const labels = d.labels || [];
    finding.parentElement.style.display = labels.length > 1 ? "" : "none";
    if (finding.dataset.labels !== JSON.stringify(labels)) {
      finding.innerHTML = labels.map((l) => `<option value="${esc(l)}">${esc(l)}</option>`).join("");
      finding.dataset.labels = JSON.stringify(labels);
    }
    const hasMap = d.panels.some((p) => p.map);
    this.root.querySelector(".mv-mapctl").style.display = hasMap ? "" : "none";
    this.root.querySelector(".mv-showmap").checked = this.showMap;
    this.root.querySelector(".mv-opacity").value = String(this.opacity);
    const cmap = this.root.querySelector(".mv-cmap");
    const names = Object.keys(d.colormaps);
    if (cmap.dataset.names !== names.join()) {
      cmap.innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
      cmap.dataset.names = names.join();
    }
    cmap.value = this.colormap;
    this.publish();
  }

  // ---- layout and drawing ------------------------------------------------------------------
  layout() {
    const d = this.data;
    if (!d) return;
    const width = this.grid.clientWidth || this.root.clientWidth;
    if (!width) return;
    const budget = d.height || Math.max(480, Math.round(window.innerHeight * 0.82));
    const n = d.panels.length;
    const aspect = d.image.h / d.image.w;
    let best = { cols: 1, w: 0, h: 0, shown: 0 };
    for (let cols = 1; cols <= n; cols++) {  // the grid that shows the image largest within the budget
      const rows = Math.ceil(n / cols);
      const w = (width - 8 * (cols - 1)) / cols;
      const h = Math.min(budget / rows, w * aspect);
      const shown = Math.min(w, h / aspect);
      if (shown > best.shown + 0.5) best = { cols, w, h, shown };
    }
    if (this.grid.children.length !== n || this.grid.dataset.ids !== d.panels.map((p) => p.id).join()) {
      this.grid.innerHTML = "";
      this.panels = d.panels.map((panel) => this.makePanel(panel));
      this.grid.dataset.ids = d.panels.map((p) => p.id).join();
    }
    this.grid.style.gridTemplateColumns = `repeat(${best.cols}, 1fr)`;
    for (const p of this.panels) {
      p.canvas.style.height = `${Math.round(best.h)}px`;
      const ratio = window.devicePixelRatio || 1;
      p.canvas.width = Math.round(p.canvas.clientWidth * ratio);
      p.canvas.height = Math.round(best.h * ratio);
    }
    this.root.dataset.panelWidth = String(Math.round(best.w));
    this.root.dataset.panelHeight = String(Math.round(best.h));
    this.changed(true);
  }

  makePanel(panel) {
    const box = document.createElement("div");
    box.className = "mv-panel";
    const canvas = document.createElement("canvas");
    canvas.setAttribute("aria-label", panel.title);
    canvas.dataset.panel = panel.id;
    box.appendChild(canvas);
    this.grid.appendChild(box);
    const entry = { spec: panel, canvas, offscreen: document.createElement("canvas") };
    canvas.addEventListener("pointerdown", (e) => this.down(e, entry));
    canvas.addEventListener("pointermove", (e) => this.move(e, entry));
    canvas.addEventListener("pointerup", (e) => this.up(e, entry));
    canvas.addEventListener("pointercancel", () => { this.drag = null; });
    canvas.addEventListener("pointerleave", () => { this.cursor = null; this.changed(); });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("dblclick", () => { Object.assign(this.view, { zoom: 1, panX: 0, panY: 0 }); this.changed(); });
    canvas.addEventListener("wheel", (e) => { e.preventDefault(); this.wheel(e, entry); }, { passive: false });
    return entry;
  }

  changed(pixelsToo = true) {
    this.dirtyPixels = this.dirtyPixels || pixelsToo;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  lut() {
    const d = this.data;
    const levels = d.image.bits === 16 ? 65536 : 256;
    const key = `${levels}:${this.view.center}:${this.view.width}:${this.view.invert}`;
    if (this.lutKey === key) return this.lutTable;
    const table = new Uint8Array(levels);
    const low = this.view.center - this.view.width / 2;
    for (let v = 0; v < levels; v++) {
      let g = clamp(((v / (levels - 1)) - low) / this.view.width, 0, 1);
      if (this.view.invert) g = 1 - g;
      table[v] = Math.round(g * 255);
    }
    this.lutKey = key;
    this.lutTable = table;
    return table;
  }

  render(entry) {
    const d = this.data;
    const w = d.image.w, h = d.image.h;
    const off = entry.offscreen;
    off.width = w;
    off.height = h;
    const ctx = off.getContext("2d");
    const out = ctx.createImageData(w, h);
    const px = out.data;
    const lut = this.lut();
    const map = this.showMap ? this.maps[entry.spec.id] : null;
    const cmap = d.colormaps[this.colormap];
    const opacity = this.opacity;
    for (let i = 0, j = 0; i < w * h; i++, j += 4) {
      const g = lut[this.pixels[i]];
      if (map) {
        const m = map[i];
        const a = opacity * m / 255;
        const c = cmap[m];
        px[j] = g + (c[0] - g) * a;
        px[j + 1] = g + (c[1] - g) * a;
        px[j + 2] = g + (c[2] - g) * a;
      } else {
        px[j] = px[j + 1] = px[j + 2] = g;
      }
      px[j + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }

  transform(entry) {
    const d = this.data;
    const c = entry.canvas;
    const fit = Math.min(c.width / d.image.w, c.height / d.image.h);
    const scale = fit * this.view.zoom;
    return {
      scale,
      x0: c.width / 2 - (d.image.w / 2 + this.view.panX) * scale,
      y0: c.height / 2 - (d.image.h / 2 + this.view.panY) * scale,
    };
  }

  toImage(entry, e) {  // pointer → sent-image pixels
    const t = this.transform(entry);
    const rect = entry.canvas.getBoundingClientRect();
    const ratio = entry.canvas.width / rect.width;
    return { x: ((e.clientX - rect.left) * ratio - t.x0) / t.scale, y: ((e.clientY - rect.top) * ratio - t.y0) / t.scale };
  }

  draw() {
    if (!this.pixels || !this.panels) return;
    const d = this.data;
    const ratio = window.devicePixelRatio || 1;
    for (const entry of this.panels) {
      if (this.dirtyPixels) this.render(entry);
      const c = entry.canvas;
      const ctx = c.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, c.width, c.height);
      const t = this.transform(entry);
      ctx.imageSmoothingEnabled = true;  // linear interpolation, as OHIF shows images by default
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(entry.offscreen, t.x0, t.y0, d.image.w * t.scale, d.image.h * t.scale);
      if (entry.spec.boxes) this.drawBoxes(ctx, t, ratio);
      this.drawText(ctx, entry, ratio);
      if (entry.spec.map && this.showMap) this.drawColourBar(ctx, ratio);
    }
    this.dirtyPixels = false;
    const first = this.panels[0];
    const t = this.transform(first);
    const css = first.canvas.width / (first.canvas.getBoundingClientRect().width || 1);
    this.root.dataset.imageRect = JSON.stringify([t.x0 / css, t.y0 / css, d.image.w * t.scale / css,
      d.image.h * t.scale / css].map((v) => Math.round(v * 10) / 10));  // CSS px in the first viewport
    this.publish();
  }

  drawBoxes(ctx, t, ratio) {
    const s = this.data.image.scale;
    const all = this.boxes.map((b, i) => [b, i]);
    if (this.drag && this.drag.kind === "box" && this.drag.box) all.push([this.drag.box, -2]);
    ctx.font = `${Math.round(13 * ratio)}px sans-serif`;
    ctx.textBaseline = "bottom";
    for (const [b, i] of all) {
      const x = t.x0 + (b.x / s) * t.scale, y = t.y0 + (b.y / s) * t.scale;
      const w = (b.w / s) * t.scale, h = (b.h / s) * t.scale;
      const colour = i === this.chosen ? CHOSEN_COLOUR : BOX_COLOUR;
      ctx.lineWidth = 2 * ratio;
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.strokeRect(x - ratio, y - ratio, w + 2 * ratio, h + 2 * ratio);
      ctx.strokeStyle = colour;
      ctx.setLineDash(i === -2 ? [6 * ratio, 4 * ratio] : []);
      ctx.strokeRect(x, y, w, h);
      ctx.setLineDash([]);
      if (i >= 0) {
        const text = `${i + 1} ${b.label || ""}`.trim();
        const tw = ctx.measureText(text).width + 8 * ratio;
        const th = 17 * ratio;
        const ty = y - th < 0 ? y + h + th : y;
        ctx.fillStyle = "rgba(0,0,0,0.65)";
        ctx.fillRect(x, ty - th, tw, th);
        ctx.fillStyle = colour;
        ctx.fillText(text, x + 4 * ratio, ty - 2 * ratio);
      }
    }
  }

  tag(ctx, text, x, y, ratio, align = "left", baseline = "top") {
    // text on a dark backing: readable over a white mediastinum in a lung window as over air
    const pad = 3 * ratio, h = 17 * ratio, w = ctx.measureText(text).width + 2 * pad;
    const left = align === "right" ? x - w : x;
    const top = baseline === "top" ? y : y - h;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(left, top, w, h);
    ctx.fillStyle = "#f0f0f0";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillText(text, left + pad, top + h / 2);
  }

  drawText(ctx, entry, ratio) {
    const c = entry.canvas;
    const v = this.view;
    const d = this.data;
    const preset = v.preset >= 0 && d.presets[v.preset] ? ` ${d.presets[v.preset].name}` : "";
    ctx.font = `${Math.round(13 * ratio)}px sans-serif`;
    const m = 6 * ratio;
    this.tag(ctx, entry.spec.title, m, m, ratio);
    if (entry.spec.map && entry.spec.map.flat) this.tag(ctx, "map is zero everywhere", m, m + 20 * ratio, ratio);
    this.tag(ctx, `W ${v.width.toFixed(2)}  L ${v.center.toFixed(2)}${preset}${v.invert ? "  inverted" : ""}`,
      m, c.height - m, ratio, "left", "bottom");
    // magnification: screen pixels per stored-image pixel
    const zoom = `Zoom ${(this.transform(entry).scale / ratio / d.image.scale).toFixed(2)}×`;
    let right = zoom;
    if (this.cursor && this.cursor.panel === entry.spec.id) {
      const { x, y } = this.cursor;
      if (x >= 0 && y >= 0 && x < d.image.w && y < d.image.h) {
        const i = Math.floor(y) * d.image.w + Math.floor(x);
        const value = this.pixels[i] / (d.image.bits === 16 ? 65535 : 255);
        const map = this.maps[entry.spec.id];
        right = `x ${Math.floor(x * d.image.scale)} y ${Math.floor(y * d.image.scale)}  value ${value.toFixed(3)}`
          + (map && this.showMap ? `  map ${(map[i] / 255).toFixed(2)}` : "") + `   ${zoom}`;
      }
    }
    const bar = entry.spec.map && this.showMap ? 40 * ratio : 0;
    this.tag(ctx, right, c.width - m - bar, c.height - m, ratio, "right", "bottom");
  }

  drawColourBar(ctx, ratio) {
    const c = ctx.canvas;
    const cmap = this.data.colormaps[this.colormap];
    const barW = 12 * ratio, barH = Math.round(c.height * 0.4);
    const x = c.width - barW - 10 * ratio, y = Math.round((c.height - barH) / 2);
    for (let k = 0; k < barH; k++) {
      const m = Math.round(255 * (1 - k / (barH - 1)));
      const col = cmap[m];
      ctx.fillStyle = `rgb(${col[0]},${col[1]},${col[2]})`;
      ctx.fillRect(x, y + k, barW, 1);
    }
    ctx.strokeStyle = "#ccc";
    ctx.lineWidth = ratio;
    ctx.strokeRect(x, y, barW, barH);
    ctx.font = `${Math.round(11 * ratio)}px sans-serif`;
    this.tag(ctx, "high", x + barW, y - 3 * ratio, ratio, "right", "bottom");
    this.tag(ctx, "low", x + barW, y + barH + 3 * ratio, ratio, "right", "top");
  }

  // ---- state out -----------------------------------------------------------------------------
  publish() {
    const v = this.view;
    Object.assign(this.root.dataset, {
      zoom: v.zoom.toFixed(3), window: v.width.toFixed(3), level: v.center.toFixed(3), invert: String(v.invert),
      preset: String(v.preset), tool: this.tool || "", boxes: String(this.boxes.length), undo: String(this.undo.length),
      showMap: String(this.showMap), opacity: String(this.opacity), colormap: this.colormap || "",
    });
    const prefs = { center: v.center, width: v.width, invert: v.invert, preset: v.preset, opacity: this.opacity,
      colormap: this.colormap, showMap: this.showMap };
    try { window.localStorage.setItem(PREFS, JSON.stringify(prefs)); } catch (e) { /* private mode */ }
  }

  sendBoxes() {
    this.seq += 1;
    this.setTrigger("boxes", { boxes: this.boxes, seq: this.seq });
  }

  setBoxes(boxes) {
    this.undo.push(this.boxes);
    this.redo = [];
    this.boxes = boxes;
    this.chosen = -1;
    this.changed(false);
    this.sendBoxes();
  }

  // ---- interaction ---------------------------------------------------------------------------
  applyPreset(i, redraw = true) {
    const p = this.data.presets[i];
    if (!p) return;
    Object.assign(this.view, { center: p.center, width: p.width, preset: i });
    if (redraw) { this.controls(); this.changed(); }
  }

  reset() {
    Object.assign(this.view, { zoom: 1, panX: 0, panY: 0, invert: false });
    this.applyPreset(0);
  }

  zoomBy(factor, entry = null, e = null) {
    const before = entry && e ? this.toImage(entry, e) : null;
    this.view.zoom = clamp(this.view.zoom * factor, 1, 32);
    if (before) {  // keep the image point under the pointer
      const after = this.toImage(entry, e);
      this.view.panX += before.x - after.x;
      this.view.panY += before.y - after.y;
    }
    if (this.view.zoom === 1) { this.view.panX = 0; this.view.panY = 0; }
    this.changed(false);
  }

  setTool(tool) {
    if (tool === "box" && !this.data.editable) return;
    this.tool = tool;
    this.controls();
  }

  barClick(e) {
    const button = e.target.closest("button");
    if (!button) return;
    if (button.dataset.tool) this.setTool(button.dataset.tool);
    if (button.dataset.preset) this.applyPreset(Number(button.dataset.preset));
    if (button.dataset.act === "invert") { this.view.invert = !this.view.invert; this.controls(); this.changed(); }
    if (button.dataset.act === "reset") this.reset();
    if (button.dataset.act === "undo") this.undoBoxes();
    this.root.focus({ preventScroll: true });
  }

  undoBoxes() {
    if (!this.data.editable || !this.undo.length) return;
    this.redo.push(this.boxes);
    this.boxes = this.undo.pop();
    this.chosen = -1;
    this.changed(false);
    this.sendBoxes();
  }

  redoBoxes() {
    if (!this.data.editable || !this.redo.length) return;
    this.undo.push(this.boxes);
    this.boxes = this.redo.pop();
    this.changed(false);
    this.sendBoxes();
  }

  key(e) {
    if (e.altKey || e.target.tagName === "SELECT" || (e.target.tagName === "INPUT" && e.target.type !== "checkbox"
        && e.target.type !== "range")) return;
    const ctrl = e.ctrlKey || e.metaKey;
    let handled = true;
    if (ctrl && (e.key === "z" || e.key === "Z")) { if (e.shiftKey) this.redoBoxes(); else this.undoBoxes(); }
    else if (ctrl && (e.key === "y" || e.key === "Y")) this.redoBoxes();
    else if (ctrl) handled = false;  // Ctrl+Enter saves the form, Ctrl+C copies: not ours
    else if (e.key >= "1" && e.key <= "5") this.applyPreset(Number(e.key) - 1);
    else if (e.key === "i" || e.key === "I") { this.view.invert = !this.view.invert; this.controls(); this.changed(); }
    else if (e.key === " ") this.reset();
    else if (e.key === "z" || e.key === "Z") this.setTool("zoom");
    else if (e.key === "w" || e.key === "W") this.setTool("wl");
    else if (e.key === "p" || e.key === "P") this.setTool("pan");
    else if (e.key === "b" || e.key === "B") this.setTool("box");
    else if (e.key === "+" || e.key === "=") this.zoomBy(1.25);
    else if (e.key === "-" || e.key === "_") this.zoomBy(1 / 1.25);
    else if (e.key === "m" || e.key === "M") { this.showMap = !this.showMap; this.controls(); this.changed(); }
    else if ((e.key === "Delete" || e.key === "Backspace") && this.chosen >= 0 && this.data.editable)
      this.setBoxes(this.boxes.filter((_, i) => i !== this.chosen));
    else if (e.key === "Escape") { this.chosen = -1; this.drag = null; this.changed(false); }
    else handled = false;
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }

  hit(entry, p) {  // the top-most box under sent-image point p, or -1
    const s = this.data.image.scale;
    for (let i = this.boxes.length - 1; i >= 0; i--) {
      const b = this.boxes[i];
      if (p.x >= b.x / s && p.x <= (b.x + b.w) / s && p.y >= b.y / s && p.y <= (b.y + b.h) / s) return i;
    }
    return -1;
  }

  down(e, entry) {
    e.preventDefault();
    this.root.focus({ preventScroll: true });
    entry.canvas.setPointerCapture(e.pointerId);
    const kind = e.button === 1 ? "pan" : e.button === 2 ? "zoom" : this.tool;
    const start = this.toImage(entry, e);
    this.drag = { kind, x: e.clientX, y: e.clientY, start, moved: false, view: { ...this.view } };
  }

  move(e, entry) {
    const p = this.toImage(entry, e);
    this.cursor = { panel: entry.spec.id, x: p.x, y: p.y };
    const drag = this.drag;
    if (!drag) { this.changed(false); return; }
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    const rect = entry.canvas.getBoundingClientRect();
    if (drag.kind === "wl") {
      this.view.width = clamp(drag.view.width + dx / rect.width, 0.01, 2);
      this.view.center = clamp(drag.view.center + dy / rect.height, -0.5, 1.5);
      this.view.preset = -1;
      this.changed(true);
      return;
    }
    if (drag.kind === "zoom") {
      this.view.zoom = clamp(drag.view.zoom * Math.exp(-dy / 150), 1, 32);
      if (this.view.zoom === 1) { this.view.panX = 0; this.view.panY = 0; }
      this.changed(false);
      return;
    }
    if (drag.kind === "pan") {
      const t = this.transform(entry);
      const ratio = entry.canvas.width / rect.width;
      this.view.panX = drag.view.panX - dx * ratio / t.scale;
      this.view.panY = drag.view.panY - dy * ratio / t.scale;
      this.changed(false);
      return;
    }
    if (drag.kind === "box" && entry.spec.boxes) {
      const d = this.data;
      const a = drag.start, b = { x: clamp(p.x, 0, d.image.w), y: clamp(p.y, 0, d.image.h) };
      const x0 = clamp(Math.min(a.x, b.x), 0, d.image.w), y0 = clamp(Math.min(a.y, b.y), 0, d.image.h);
      const s = d.image.scale;
      drag.box = { x: x0 * s, y: y0 * s, w: Math.abs(b.x - clamp(a.x, 0, d.image.w)) * s,
        h: Math.abs(b.y - clamp(a.y, 0, d.image.h)) * s, label: this.finding() };
      this.changed(false);
    }
  }

  finding() {  // the finding a new box names
    const select = this.root.querySelector(".mv-finding");
    return select.value || (this.data.labels || [""])[0] || "";
  }

  up(e, entry) {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    if (!drag.moved && entry.spec.boxes) {  // a click: choose the box under the pointer (Delete removes it)
      this.chosen = this.hit(entry, this.toImage(entry, e));
      this.changed(false);
      return;
    }
    if (drag.kind === "wl") this.controls();
    if (drag.kind === "box" && drag.box && entry.spec.boxes) {
      const s = this.data.image.scale;
      const b = drag.box;
      if (b.w / s >= 2 && b.h / s >= 2) {
        const r = (v) => Math.round(v * 10) / 10;
        this.setBoxes([...this.boxes, { x: r(b.x), y: r(b.y), w: r(b.w), h: r(b.h), label: b.label }]);
      } else this.changed(false);
    }
  }

  wheel(e, entry) {
    this.zoomBy(Math.pow(1.0015, -e.deltaY), entry, e);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let viewer = VIEWERS.get(parentElement);
  if (!viewer) {
    viewer = new Viewer(parentElement);
    VIEWERS.set(parentElement, viewer);
  }
  viewer.setTrigger = setTriggerValue;
  viewer.update(data);
  return () => viewer.destroy();
}
