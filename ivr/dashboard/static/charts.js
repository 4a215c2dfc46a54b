// Charts as inline SVG, drawn here: no chart library, nothing fetched.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// Grid lines at whole numbers for counts (5 -> 0..5 by 1), quarters for times.
function tickCount(max, counts) {
  return counts ? [4, 5, 2, 1].find((n) => Number.isInteger(max / n)) : 4;
}

function fmt(value, unit) {
  if (unit === "ms") return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
  if (unit === "%") return `${Math.round(value * 100)}%`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// Horizontal bars, one row per label; `series` gives one or more values per row (e.g. p50 and p95).
export function barChart(rows, { series = [{ key: "value", color: "#2563eb", label: "" }], unit = "", width = 520, title = "", labelW = 170 } = {}) {
  const rowH = 18 * series.length + 10;
  const pad = 60;
  const height = Math.max(rows.length * rowH + 28, 60);
  // Counts get an axis of whole numbers (at least 0..4); times and rates any nice maximum.
  const max = niceMax(Math.max(unit ? 0 : 4, ...rows.flatMap((r) => series.map((s) => r[s.key] ?? 0))));
  const plotW = width - labelW - pad;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": title, class: "chart-bars" });
  const n = tickCount(max, !unit);
  for (let i = 0; i <= n; i++) {
    const x = labelW + (plotW * i) / n;
    root.append(svg("line", { x1: x, x2: x, y1: 0, y2: height - 20, class: "grid" }));
    root.append(svg("text", { x, y: height - 6, "text-anchor": "middle", fill: "#5f6b7a" }, fmt((max * i) / n, unit)));
  }
  rows.forEach((row, i) => {
    const y0 = i * rowH + 6;
    root.append(svg("text", { x: labelW - 8, y: y0 + (rowH - 10) / 2 + 4, "text-anchor": "end" }, row.label));
    series.forEach((s, j) => {
      const value = row[s.key] ?? 0;
      const w = Math.max((plotW * value) / max, value > 0 ? 1 : 0);
      const bar = svg("rect", { x: labelW, y: y0 + j * 18, width: w, height: 14, rx: 2, fill: s.color, class: "bar" });
      bar.append(svg("title", {}, `${row.label}${s.label ? " " + s.label : ""}: ${fmt(value, unit)}`));
      root.append(bar);
      root.append(svg("text", { x: labelW + w + 4, y: y0 + j * 18 + 11, fill: "#5f6b7a" }, fmt(value, unit)));
    });
  });
  return root;
}

// Columns over time (calls per bucket).
export function columnChart(points, { width = 520, height = 200, title = "", label = (t) => t } = {}) {
  const left = 36, bottom = 24, top = 8;
  const max = niceMax(Math.max(4, ...points.map((p) => p.value)));
  const plotW = width - left - 8, plotH = height - bottom - top;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": title, class: "chart-columns" });
  const n = tickCount(max, true);
  for (let i = 0; i <= n; i++) {
    const y = top + plotH - (plotH * i) / n;
    root.append(svg("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", fill: "#5f6b7a" }, fmt((max * i) / n)));
  }
  const slot = plotW / Math.max(points.length, 1);
  const every = Math.ceil(points.length / 8);
  points.forEach((p, i) => {
    const h = (plotH * p.value) / max;
    const x = left + i * slot;
    const bar = svg("rect", { x: x + slot * 0.12, y: top + plotH - h, width: Math.max(slot * 0.76, 1), height: h, fill: "#2563eb", class: "bar" });
    bar.append(svg("title", {}, `${label(p.t)}: ${p.value}`));
    root.append(bar);
    if (i % every === 0) root.append(svg("text", { x: x + slot / 2, y: height - 6, "text-anchor": "middle", fill: "#5f6b7a" }, label(p.t)));
  });
  root.append(svg("line", { x1: left, x2: width - 8, y1: top + plotH, y2: top + plotH, class: "axis" }));
  return root;
}

const STAGE_COLORS = {
  "end of speech → transcript": "#0f766e", "speech recognition": "#5eead4", "understanding (NLU)": "#d97706",
  "→ first audio": "#4338ca", "voice to voice": "#94a3b8",
};

// One turn's latency waterfall: bars on a shared time axis from the end of the caller's speech.
export function waterfall(bars, { width = 440 } = {}) {
  const labelW = 160, rowH = 20, right = 56;
  const height = bars.length * rowH + 24;
  const max = niceMax(Math.max(1, ...bars.map((b) => b.end_ms)));
  const plotW = width - labelW - right;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": "latency waterfall", class: "waterfall" });
  for (let i = 0; i <= 4; i++) {
    const x = labelW + (plotW * i) / 4;
    root.append(svg("line", { x1: x, x2: x, y1: 0, y2: height - 18, class: "grid" }));
    root.append(svg("text", { x, y: height - 5, "text-anchor": "middle", fill: "#5f6b7a" }, fmt((max * i) / 4, "ms")));
  }
  bars.forEach((b, i) => {
    const y = i * rowH + 3;
    const x = labelW + (plotW * b.start_ms) / max;
    const w = Math.max((plotW * (b.end_ms - b.start_ms)) / max, 2);
    root.append(svg("text", { x: labelW - 6, y: y + 11, "text-anchor": "end" }, b.stage));
    const rect = svg("rect", { x, y, width: w, height: 14, rx: 2, fill: STAGE_COLORS[b.stage] || "#64748b", class: "bar" });
    rect.append(svg("title", {}, `${b.stage}: ${fmt(b.end_ms - b.start_ms, "ms")} (${fmt(b.start_ms, "ms")} → ${fmt(b.end_ms, "ms")})`));
    root.append(rect);
    root.append(svg("text", { x: x + w + 4, y: y + 11, fill: "#5f6b7a" }, fmt(b.end_ms - b.start_ms, "ms")));
  });
  return root;
}
