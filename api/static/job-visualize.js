// `/jobs/{id}` of a `visualize` job: per item its picture, snapshots and objective curve,
// refreshed while the job runs (cards are kept and updated, so loaded pictures stay put).
"use strict";

const visualCards = new Map();  // item index -> {card, png, snapshots, curve}

function refName(ref) {
  if (!ref || typeof ref !== "object") return String(ref);
  if (ref.uri) return ref.uri.split("/").pop();
  if (ref.upload) return ref.upload;
  return "item" in ref ? `item ${ref.item}` : JSON.stringify(ref);
}

function objectiveLabel(o, names) {
  if (!o || typeof o !== "object") return o ? String(o) : "";
  if ("class" in o) return `class ${o.class}` + (names && names[o.class] ? ` (${names[o.class]})` : "");
  if ("invert" in o) return `invert ${refName(o.invert)} at ${o.layer}`;
  if ("dream" in o) return `dream on ${refName(o.dream)} at ${o.layer}`;
  if ("layer" in o) return `${o.layer} channel ${o.channel}` + (o.position ? ` at [${o.position}]` : "");
  return JSON.stringify(o);
}

// An item's objective and start: from the report, the item, or the job's list (objective-major).
function objectiveOf(job, item, entry) {
  if (entry) return [entry.objective, entry.start];
  if (item.objective) return [item.objective, item.start];
  const objectives = [].concat(job.objective || []);
  const starts = job.starts || 1;
  return [objectives[Math.floor(item.index / starts)], item.index % starts];
}

function samePicture(a, b) {
  const path = (u) => (u ? new URL(u, location.href).pathname : "");
  return path(a) === path(b);
}

async function fetchCurve(url) {
  const headers = apiKey() && new URL(url, location.href).origin === location.origin
    ? { Authorization: "Bearer " + apiKey() } : {};
  const response = await fetch(url, { headers });
  return response.ok ? response.json() : null;
}

function curveChart(values) {
  if (!values || !values.length) return el("p", { class: "muted curve", text: "no steps yet" });
  const labels = values.map((_, i) => String(i + 1));
  return lineChart(labels, [{ label: "objective", values }], {
    width: 300, height: 130, lo: Infinity, hi: -Infinity, title: "objective per step", ticks: 6,
    rotate: false, xTitle: "step",
  });
}

// The report's figures of a curve (docs/visualize.md): its last value is one noisy step, so
// the mean of its last steps and its best value come beside it.
function curveFigures(entry) {
  const n = (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(4));
  return `final ${n(entry.final)} · mean of the last 5 % of steps ${n(entry.final_mean)} · ` +
    `best ${n(entry.best.value)} at step ${entry.best.step}`;
}

function visualCard(job, item, entry, names) {
  let state = visualCards.get(item.index);
  if (!state) {
    const card = el("article", { class: "card visual", "data-index": item.index },
      el("header", {}, el("strong", { class: "input" }), el("span", { class: "muted start" })),
      el("p", { class: "error item-error", hidden: true }),
      el("div", { class: "maps" }, el("img", { class: "picture", alt: "optimized image", width: 160, height: 160 })),
      el("div", { class: "snapshots" }), el("div", { class: "curve-box" }),
      el("p", { class: "figures", hidden: true }), el("p", { class: "links" }));
    state = { card, png: null, snapshots: [], curveLength: -1 };
    visualCards.set(item.index, state);
  }
  const { card } = state;
  const [objective, start] = objectiveOf(job, item, entry);
  card.querySelector(".input").textContent = `${item.index}: ${objectiveLabel(objective, names)}`;
  card.querySelector(".start").textContent = ` · start ${start ?? 0} · ${item.status}`;
  const error = card.querySelector(".item-error");
  error.hidden = !item.error;
  error.textContent = item.error || "";
  const out = (item.outputs || []).find((o) => o.method === "visualize") || (item.outputs || [])[0];
  const png = (out && out.png) || (entry && entry.png);
  const picture = card.querySelector(".picture");
  if (png && !samePicture(png, state.png)) showImage(picture, png);
  picture.hidden = !png;
  state.png = png || state.png;
  const snapshots = (out && out.snapshots) || [];
  for (const url of snapshots.slice(state.snapshots.length)) {
    const img = el("img", { alt: `snapshot ${state.snapshots.length + 1}`, width: 48, height: 48 });
    showImage(img, url);
    card.querySelector(".snapshots").append(img);
    state.snapshots.push(url);
  }
  const figures = card.querySelector(".figures");
  figures.hidden = !(entry && entry.best);
  if (entry && entry.best) figures.textContent = curveFigures(entry);
  const links = card.querySelector(".links");
  if (out) {
    const stem = `${String(item.index).padStart(5, "0")}_visualize`;
    links.replaceChildren(...[["png", ".png"], ["npy", ".npy"], ["curve", "_curve.json"]]
      .filter(([k]) => out[k]).flatMap(([k, suffix]) => [artifactLink(out[k], stem + suffix, k), " "]));
  }
  return { card, state, curve: entry ? entry.curve : null, curveUrl: out && out.curve };
}

async function drawCurve({ card, state, curve, curveUrl }) {
  const values = curve || (curveUrl ? await fetchCurve(curveUrl) : null);
  if (values && values.length === state.curveLength) return;
  state.curveLength = values ? values.length : 0;
  card.querySelector(".curve-box").replaceChildren(curveChart(values));
}

async function showVisualize(job, final) {
  const report = final ? await api(`/v1/jobs/${encodeURIComponent(job.id)}/report`) : null;
  const entries = new Map(((report && report.items) || []).map((e) => [e.index, e]));
  const made = [];
  await showItems(job, (item, names) => {
    const m = visualCard(job, item, entries.get(item.index), names);
    made.push(m);
    return m.card;
  }, undefined, "visuals");
  await Promise.all(made.map(drawCurve));
}
