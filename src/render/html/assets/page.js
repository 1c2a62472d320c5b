// leakscope's page: draws live memory over time from the growth history
// (stacked areas of the largest types or sites, the rest on top), follows
// it by itself, shows the figures at a point on hover, and sizes the
// flamegraph to its drawing. Loads nothing from anywhere but the endpoint.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // Distinct for common colour blindness (Okabe–Ito, then two greys).
  const COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9",
                   "#d55e00", "#f0e442", "#000000", "#999999"];
  const SHOWN = 8;

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let u = 0;
    while (n >= 1024 && u + 1 < units.length) { n /= 1024; u += 1; }
    return u === 0 ? n + " B" : n.toFixed(1) + " " + units[u];
  }

  function span(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  // `alloc::vec::Vec<spider::Body>` → `Vec<Body>`: module paths go.
  function short(label) {
    return label.replace(/\b[A-Za-z_][A-Za-z0-9_]*::/g, "");
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // The series drawn: the largest rows, then the rest of the heap.
  function series(history, by) {
    const rows = (by === "sites" ? history.sites : history.types).slice(0, SHOWN);
    const total = history.total.bytes;
    const rest = total.map((t, i) => Math.max(0, t - rows.reduce((s, r) => s + (r.bytes[i] || 0), 0)));
    const out = rows.map((r, k) => ({ label: r.label, bytes: r.bytes, colour: COLOURS[k] }));
    out.push({ label: "everything else", bytes: rest, colour: COLOURS[COLOURS.length - 1] });
    return out;
  }

  function niceStep(max) {
    const raw = max / 4;
    const p = Math.pow(1024, Math.max(0, Math.floor(Math.log(raw) / Math.log(1024))));
    const m = raw / p;
    const step = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024].find((s) => s >= m) || 1024;
    return step * p;
  }

  function draw(svg, history) {
    const by = svg.dataset.by;
    const times = history.times;
    while (svg.lastChild && svg.lastChild.nodeName !== "title" && svg.lastChild.nodeName !== "desc") {
      svg.removeChild(svg.lastChild);
    }
    const W = svg.clientWidth || 800, H = svg.clientHeight || 280;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const left = 64, right = 10, top = 10, bottom = 24;
    const s = series(history, by);
    const n = times.length;
    svg.dataset.points = String(n);
    svg.dataset.spanSeconds = n > 1 ? String(times[n - 1] - times[0]) : "0";
    const legend = document.getElementById("chart-legend");
    legend.textContent = "";
    if (n === 0) {
      el("text", { x: left, y: H / 2, class: "axis" }, svg).textContent =
        history.running ? "No point yet: the first comes within one interval." : "No growth history runs.";
      return;
    }
    const t0 = times[0], t1 = n > 1 ? times[n - 1] : t0 + 1;
    const max = Math.max(1, ...history.total.bytes);
    const step = niceStep(max);
    const yMax = Math.ceil(max / step) * step;
    const x = (t) => left + (t - t0) / (t1 - t0) * (W - left - right);
    const y = (v) => H - bottom - v / yMax * (H - top - bottom);
    for (let v = 0; v <= yMax; v += step) {
      el("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }, svg);
      const label = el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, svg);
      label.textContent = bytes(v);
    }
    const ticks = Math.min(6, n);
    for (let k = 0; k < ticks; k++) {
      const t = t0 + (t1 - t0) * k / Math.max(1, ticks - 1);
      const label = el("text", { x: x(t), y: H - 6, "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle", class: "axis" }, svg);
      label.textContent = k === ticks - 1 ? "now" : "−" + span(t1 - t);
    }
    const below = new Array(n).fill(0);
    s.forEach((row) => {
      const up = row.bytes.map((b, i) => below[i] + (b || 0));
      let d = "M" + x(times[0]) + "," + y(up[0]);
      for (let i = 1; i < n; i++) d += "L" + x(times[i]) + "," + y(up[i]);
      for (let i = n - 1; i >= 0; i--) d += "L" + x(times[i]) + "," + y(below[i]);
      el("path", { d: d + "Z", fill: row.colour, "fill-opacity": "0.8", stroke: row.colour }, svg);
      for (let i = 0; i < n; i++) below[i] = up[i];
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = row.colour;
      li.appendChild(sw);
      const name = document.createElement("span");
      name.textContent = short(row.label);
      name.title = row.label;
      li.appendChild(name);
      legend.appendChild(li);
    });
    const cursor = el("line", { x1: 0, x2: 0, y1: top, y2: H - bottom, class: "cursor", visibility: "hidden" }, svg);
    const tip = document.getElementById("chart-tip");
    svg.onmousemove = (e) => {
      const box = svg.getBoundingClientRect();
      const px = (e.clientX - box.left) * W / box.width;
      let i = 0;
      for (let k = 1; k < n; k++) if (Math.abs(x(times[k]) - px) < Math.abs(x(times[i]) - px)) i = k;
      cursor.setAttribute("x1", x(times[i]));
      cursor.setAttribute("x2", x(times[i]));
      cursor.setAttribute("visibility", "visible");
      tip.textContent = "";
      const when = document.createElement("div");
      when.textContent = (i === n - 1 ? "now" : span(t1 - times[i]) + " ago") + ": " +
        bytes(history.total.bytes[i]) + " live";
      tip.appendChild(when);
      const table = document.createElement("table");
      const head = table.createTHead().insertRow();
      [by === "sites" ? "Site" : "Type", "Bytes"].forEach((h, k) => {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = h;
        if (k === 1) th.className = "num";
        head.appendChild(th);
      });
      const body = table.createTBody();
      s.slice().reverse().forEach((row) => {
        const tr = document.createElement("tr");
        const a = document.createElement("td");
        const sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = row.colour;
        a.appendChild(sw);
        a.appendChild(document.createTextNode(" " + short(row.label)));
        const b = document.createElement("td");
        b.textContent = bytes(row.bytes[i] || 0);
        b.className = "num";
        tr.appendChild(a); tr.appendChild(b);
        body.appendChild(tr);
      });
      tip.appendChild(table);
      tip.hidden = false;
      const room = box.width - (e.clientX - box.left);
      tip.style.left = room > 300 ? (e.clientX - box.left + 12) + "px" : "";
      tip.style.right = room > 300 ? "" : (room + 12) + "px";
    };
    svg.onmouseleave = () => { tip.hidden = true; cursor.setAttribute("visibility", "hidden"); };
    const desc = document.getElementById("chart-desc");
    desc.textContent = "Live bytes went from " + bytes(history.total.bytes[0]) + " to " +
      bytes(history.total.bytes[n - 1]) + " over " + span(t1 - t0) + " (" + n + " points); largest now: " +
      s.slice(0, 3).map((r) => short(r.label) + " " + bytes(r.bytes[n - 1] || 0)).join(", ") + ".";
  }

  // The page's requests one after another: the endpoint answers a few
  // clients at once, and a browser opens several connections.
  function follow(svg, then) {
    let interval = 10;
    const tick = () => {
      fetch(svg.dataset.source, { cache: "no-store" })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status + " " + r.statusText))))
        .then((h) => {
          interval = Math.max(1, h.interval_seconds || 10);
          draw(svg, h);
          svg.dataset.error = "";
        })
        .catch((e) => { svg.dataset.error = String(e); })
        .finally(() => {
          if (then) { then(); then = null; }
          setTimeout(tick, interval * 1000);
        });
    };
    tick();
  }

  // Loads the flamegraph (once the chart has its figures) and sizes it to
  // its drawing.
  function loadFlamegraph() {
    const obj = document.getElementById("flamegraph");
    if (!obj) return;
    const fit = () => {
      const doc = obj.contentDocument;
      if (!doc || !doc.documentElement) return;
      const h = parseFloat(doc.documentElement.getAttribute("height"));
      if (h > 0) obj.style.height = h + "px";
    };
    obj.addEventListener("load", fit);
    // Its script sizes the drawing to the object's width at load: wait
    // until the object has one.
    const start = () => {
      if (obj.clientWidth > 40) obj.data = obj.dataset.src;
      else requestAnimationFrame(start);
    };
    start();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const svg = document.getElementById("chart");
    if (svg) follow(svg, loadFlamegraph);
    else loadFlamegraph();
  });
})();
