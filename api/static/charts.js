// Small inline-SVG charts: histograms (a series beside a baseline) and line charts.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f6fd6", "#d9822b", "#18794e", "#b3261e", "#7c4dbd", "#4a8f9c"];

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function chartFrame(width, height, label) {
  return svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
                        "aria-label": label, class: "chart" });
}

function tickLabel(x) {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(2)).toString();
}

// Bars of `main` (shares of its count per bin) with `baseline`'s as an outline, and the
// main series' 10/50/90 % quantiles as ticks under the axis. Each: {label, histogram, p10,
// p50, p90}. Both are drawn as shares, so series of different sizes compare.
function histogramChart(main, baseline, { width = 300, height = 120, title = "" } = {}) {
  const pad = { l: 36, r: 8, t: 8, b: 30 };
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  const svg = chartFrame(width, height, title);
  const shares = (s) => {
    const total = s.histogram.counts.reduce((a, b) => a + b, 0) || 1;
    return s.histogram.counts.map((c) => c / total);
  };
  const series = [main, baseline].filter((s) => s && s.histogram);
  const top = Math.max(0.01, ...series.flatMap(shares));
  const x = (v) => pad.l + v * w, y = (v) => pad.t + h - (v / top) * h;
  svg.append(svgEl("title", {}, title));
  svg.append(svgEl("line", { x1: pad.l, y1: pad.t + h, x2: pad.l + w, y2: pad.t + h, class: "axis" }));
  for (const v of [0, 0.5, 1]) {
    svg.append(svgEl("text", { x: x(v), y: pad.t + h + 22, class: "tick", "text-anchor": "middle" },
                     String(v)));
  }
  svg.append(svgEl("text", { x: pad.l - 4, y: pad.t + 8, class: "tick", "text-anchor": "end" },
                   percent(top)));
  if (main && main.histogram) {
    const edges = main.histogram.bins;
    shares(main).forEach((s, i) => {
      if (!s) return;
      const left = x(edges[i]) + 0.5, right = x(edges[i + 1]) - 0.5;
      svg.append(svgEl("rect", { x: left, y: y(s), width: Math.max(1, right - left),
                                 height: pad.t + h - y(s), class: "bar" }));
    });
  }
  if (baseline && baseline.histogram) {
    const edges = baseline.histogram.bins;
    let d = `M ${x(edges[0])} ${y(0)}`;
    shares(baseline).forEach((s, i) => { d += ` V ${y(s)} H ${x(edges[i + 1])}`; });
    svg.append(svgEl("path", { d: d + ` V ${y(0)}`, class: "baseline" }));
  }
  for (const q of ["p10", "p50", "p90"]) {
    if (main && main[q] !== null && main[q] !== undefined) {
      const at = x(Math.min(1, Math.max(0, main[q])));
      svg.append(svgEl("line", { x1: at, x2: at, y1: pad.t + h + 1, y2: pad.t + h + (q === "p50" ? 10 : 6),
                                 class: "quantile" }));
    }
  }
  svg.dataset.series = String(series.length);
  return svg;
}

// Lines over categories: `labels` along x, `series` [{label, values}] with a y range that
// holds every value (and [lo, hi] at least). Points carry <title>s with their value.
// Room for tick labels: a generous width of one character of a 10 px tick, and the slant of
// x labels drawn at an angle.
const CHAR_PX = 6.2;
const SLANT = (35 * Math.PI) / 180;

// The margins that hold every tick label inside the chart: the y labels at the left; x labels
// under their points, or slanted so that each ends at its point and reaches back and down.
function lineMargins(shown, n, yLabels, { width, rotate, xTitle }) {
  const textWidth = (text) => String(text).length * CHAR_PX;
  let left = Math.max(36, ...yLabels.map(textWidth).map((v) => v + 6));
  let right = 10;
  if (!rotate && shown.length) {
    left = Math.max(left, textWidth(shown[0][0]) / 2 + 2);
    right = Math.max(right, textWidth(shown[shown.length - 1][0]) / 2 + 2);
  }
  for (let pass = 0; rotate && pass < 2; pass++) {  // the step between points depends on `left`
    const step = n > 1 ? (width - left - right) / (n - 1) : 0;
    left = Math.max(left, ...shown.map(([label, i]) => textWidth(label) * Math.cos(SLANT) + 4 - i * step));
  }
  const longest = Math.max(0, ...shown.map(([label]) => textWidth(label)));
  const bottom = (rotate ? 18 + longest * Math.sin(SLANT) : 18) + (xTitle ? 14 : 0);
  return { l: left, r: right, t: 10, b: bottom };
}

function lineChart(labels, series, { width = 460, height = 220, lo = 0, hi = 1, title = "",
                                     xTitle = "", ticks = 12, rotate = true } = {}) {
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const min = Math.min(lo, ...values), max = Math.max(hi, ...values);
  const span = max - min || 1;
  const n = Math.max(labels.length, ...series.map((s) => s.values.length));
  const every = Math.ceil(labels.length / ticks);
  const shown = labels.map((label, i) => [label, i]).filter(([, i]) => !(i % every));
  const yTicks = [min, (min + max) / 2, max];
  const pad = lineMargins(shown, n, yTicks.map(tickLabel), { width, rotate, xTitle });
  height = Math.max(height, pad.t + pad.b + 60);  // long slanted labels take room from the plot
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  const x = (i) => pad.l + (n > 1 ? (i / (n - 1)) * w : w / 2);
  const y = (v) => pad.t + h - ((v - min) / span) * h;
  const svg = chartFrame(width, height, title);
  svg.append(svgEl("title", {}, title));
  for (const v of yTicks) {
    svg.append(svgEl("line", { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(svgEl("text", { x: pad.l - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" },
                     tickLabel(v)));
  }
  shown.forEach(([label, i]) => {
    const at = [x(i), pad.t + h + 12];
    svg.append(svgEl("text", rotate
      ? { x: at[0], y: at[1], class: "tick", "text-anchor": "end", transform: `rotate(-35 ${at[0]} ${at[1]})` }
      : { x: at[0], y: at[1], class: "tick", "text-anchor": "middle" }, label));
  });
  if (xTitle) {
    svg.append(svgEl("text", { x: pad.l + w / 2, y: height - 2, class: "tick", "text-anchor": "middle" },
                     xTitle));
  }
  series.forEach((s, k) => {
    const colour = s.colour || PALETTE[k % PALETTE.length];
    const points = s.values.map((v, i) => [i, v]).filter(([, v]) => v !== null && Number.isFinite(v));
    svg.append(svgEl("polyline", { points: points.map(([i, v]) => `${x(i)},${y(v)}`).join(" "),
                                   class: "line", stroke: colour, "data-series": s.label }));
    if (points.length <= 40) {
      for (const [i, v] of points) {
        const dot = svgEl("circle", { cx: x(i), cy: y(v), r: 2.5, fill: colour });
        dot.append(svgEl("title", {}, `${s.label} · ${labels[i] ?? i}: ${tickLabel(v)}`));
        svg.append(dot);
      }
    }
  });
  return svg;
}

// A legend for `series` in the colours lineChart gives them.
function legend(series) {
  return el("p", { class: "legend" }, ...series.map((s, k) => el("span", {},
    el("i", { style: `background:${s.colour || PALETTE[k % PALETTE.length]}` }), s.label)));
}
