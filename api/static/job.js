// `/jobs/{id}`: progress while the job runs, then its results by kind: one page of maps
// (cursor paging) for attribution, the grids for top_activations (job-top.js), the pictures
// as they arrive for visualize (job-visualize.js).
"use strict";

const section = document.getElementById("job");
const jobId = section.dataset.jobId;
const pageSize = parseInt(section.dataset.pageSize, 10);
const params = new URLSearchParams(location.search);
const cursor = params.get("cursor") || "";
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const COLORBARS = { inferno: section.dataset.colorbarInferno, signed: section.dataset.colorbarSigned };

function targetLabel(t) {
  if (t && typeof t === "object") {
    if ("class" in t) return `class${t.class}`;
    if ("layer" in t) return `${t.layer}-ch${t.channel}`.replace(/[^A-Za-z0-9_.-]/g, "_");
    if ("topk" in t) return `top${t.topk}`;
  }
  return String(t || "predicted");
}

function inputLabel(input, index) {
  if (typeof input === "string") return input;
  if (input && typeof input === "object") return input.name || input.filename || input.uri || `#${index}`;
  return `#${index}`;
}

async function classNames(job) {
  const model = job.model || (job.spec && job.spec.model);
  if (!model) return null;
  try {
    return (await api(`/v1/models/${encodeURIComponent(model)}`)).class_names || null;
  } catch (error) {
    return null;  // names are a nicety: the indices still show
  }
}

function pageLink(c) {
  const p = new URLSearchParams(params);
  if (c) p.set("cursor", c); else p.delete("cursor");
  return "?" + p.toString();
}

// The items API pages forward only; remember which cursor led to which, for "previous".
function trail(next) {
  const key = `trail:${jobId}`;
  const map = JSON.parse(sessionStorage.getItem(key) || "{}");
  if (next) map[next] = cursor;
  sessionStorage.setItem(key, JSON.stringify(map));
  return map;
}

// A tick's number, short: three significant digits, exponents for the very small or large.
function tickLabel(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 0.01 && a < 10000 ? String(Number(v.toPrecision(3))) : v.toExponential(2);
}

// A picture's colour bar, its ends and middle labelled with the values they stand for
// (`bar` from the output's `colorbars`; outputs recorded before them say "low" and "high").
function colorbar(bar) {
  const known = bar && bar.low !== null && bar.high !== null;
  const ticks = known ? [bar.low, (bar.low + bar.high) / 2, bar.high].map(
    (v) => el("span", { class: "tick", text: tickLabel(v), title: String(v) }))
    : [el("span", { text: "low" }), el("span", { text: "high" })];
  return el("div", { class: "colorbar", title: "values beyond the ends saturate" },
            el("img", { src: COLORBARS[(bar && bar.colormap) || "inferno"], alt: "colour scale",
                        width: 160, height: 10 }),
            el("div", { class: "ticks" }, ...ticks));
}

// Rectifiers of the item's forward pass, and how the method's rule covered them.
function coverageText(c) {
  const overridden = c.overridden === null || c.overridden === undefined ? "–" : c.overridden;
  return `coverage: ${overridden} of ${c.relu_calls} rectifiers through the rule · ` +
    `${c.applied} rule applications`;
}

// A picture at a size to read it, with its colour bar; a click or Escape closes it.
function enlarge(picture, caption) {
  let dialog = document.getElementById("enlarged");
  if (!dialog) {
    dialog = el("dialog", { id: "enlarged" });
    dialog.addEventListener("click", () => dialog.close());
    document.body.append(dialog);
  }
  const img = picture.querySelector("img");
  dialog.replaceChildren(el("img", { src: img.src, alt: img.alt }),
                         picture.querySelector(".colorbar").cloneNode(true),
                         el("p", { text: caption }));
  dialog.showModal();
}

function renderItem(item, names) {
  const card = document.getElementById("card").content.firstElementChild.cloneNode(true);
  card.querySelector(".input").textContent = `${item.index}: ${inputLabel(item.input, item.index)}`;
  const p = item.prediction;
  if (p) {
    const name = p.class_name || p.label || (names && names[p.class]);
    card.querySelector(".pred").textContent =
      `→ ${name ? `${name} (${p.class})` : `class ${p.class}`} · ${(p.score * 100).toFixed(1)}%`;
  }
  if (item.error) {
    const e = card.querySelector(".item-error");
    e.textContent = `${item.status}: ${item.error}`;
    e.hidden = false;
  }
  for (const out of item.outputs || []) {
    const fig = document.getElementById("output").content.firstElementChild.cloneNode(true);
    const label = targetLabel(out.target);
    fig.querySelector(".method").textContent = out.method;
    const cls = out.target && out.target.class;
    const clsName = (names && names[cls]) || (p && cls === p.class && (p.class_name || p.label));
    fig.querySelector(".target").textContent = label + (clsName ? ` (${clsName})` : "");
    const render = out.params && out.params.render;
    fig.querySelector(".render").textContent = render ? `· ${render}` : "";
    const stem = `${String(item.index).padStart(5, "0")}_${out.method}_${label}`;
    for (const picture of fig.querySelectorAll(".picture")) {
      const kind = picture.dataset.kind;
      if (!out[kind]) { picture.remove(); continue; }
      const img = picture.querySelector("img");
      if (kind === "png" && render) img.alt = `${render} picture`;
      showImage(img, out[kind]);
      picture.append(colorbar((out.colorbars || {})[kind]));
      img.addEventListener("click", () => enlarge(picture, `${item.index}: ${out.method} · ${kind}`));
    }
    if (out.coverage) {
      const coverage = fig.querySelector(".coverage");
      coverage.textContent = coverageText(out.coverage);
      coverage.hidden = false;
    }
    const warnings = fig.querySelector(".warnings");
    warnings.replaceChildren(...(out.warnings || []).map((w) => el("li", { class: "warning", text: w })));
    warnings.hidden = !warnings.children.length;
    const links = fig.querySelector(".links");
    const kinds = [["npy", ".npy"], ["png", ".png"], ["overlay", "_overlay.png"],
                   ["signed", "_signed.png"]];
    for (const [kind, suffix] of kinds) {
      if (out[kind]) links.append(artifactLink(out[kind], stem + suffix, kind), " ");
    }
    card.querySelector(".outputs").append(fig);
  }
  return card;
}

// One page of items, drawn by `render(item, names)`; `update(grid, cards)` places the cards
// (by default they replace the page's).
async function showItems(job, render = renderItem, update = (grid, cards) => grid.replaceChildren(...cards),
                         gridId = "grid") {
  const query = new URLSearchParams({ limit: pageSize });
  if (cursor) query.set("cursor", cursor);
  const [page, names] = await Promise.all([
    api(`/v1/jobs/${encodeURIComponent(jobId)}/items?${query}`), classNames(job)]);
  update(document.getElementById(gridId), page.items.map((item) => render(item, names)));
  const map = trail(page.next_cursor);
  const pager = document.getElementById("pager");
  pager.hidden = !(cursor || page.next_cursor);
  document.getElementById("first").href = pageLink("");
  document.getElementById("prev").href = pageLink(map[cursor] || "");
  document.getElementById("prev").hidden = !cursor;
  document.getElementById("first").hidden = !cursor;
  document.getElementById("next").href = pageLink(page.next_cursor);
  document.getElementById("next").hidden = !page.next_cursor;
  if (page.items.length) {
    const first = page.items[0].index, last = page.items[page.items.length - 1].index;
    const total = itemCount(job);
    document.getElementById("range").textContent = `items ${first}–${last}` + (total ? ` of ${total}` : "");
  }
  return page;
}

// How many items a job has: one per input, or for visualize one per objective × start.
function itemCount(job) {
  if (job.kind !== "visualize") return job.progress.total;
  return job.objective ? [].concat(job.objective).length * (job.starts || 1) : null;
}

function reportJsonLink() {
  document.getElementById("report-json").replaceChildren(artifactLink(
    `/v1/jobs/${encodeURIComponent(jobId)}/report`, `report-${jobId}.json`, "report JSON"));
}

// What each kind counts, and how far along it is: [text, done, total].
function progressOf(job) {
  const { total, done, failed } = job.progress;
  const extra = job.progress.planning ? " · planning the data set…"
    : job.progress.finalizing ? " · finalizing: writing the results file and the report…" : "";
  const failures = failed ? ` (${failed} failed)` : "";
  if (job.kind === "visualize") {
    const saving = job.status === "running" && !extra && total && done >= total
      ? " · every step done: saving the pictures…" : "";
    return [`${done} / ${total} steps${failures}${extra || saving}`, done + failed, total];
  }
  if (job.kind === "top_activations") {
    const p = job.progress.projections || { done: 0, due: 0 };
    return [`${done + failed} / ${total} inputs scanned${failures} · ${p.done} / ${p.due} projections${extra}`,
            done + failed + p.done, total + p.due];
  }
  return [`${done + failed} / ${total} items${failures}${extra}`, done + failed, total];
}

// Each kind: what to show while the job runs (or null), and once it is final.
const KINDS = {
  attribution: {
    running: null,
    final: async (job) => {
      document.getElementById("report-link").hidden = false;
      reportJsonLink();
      await showItems(job);
    },
  },
  top_activations: { running: null, final: (job) => { reportJsonLink(); return showTopActivations(job); } },
  visualize: {
    running: (job) => showVisualize(job, false),
    final: (job) => { reportJsonLink(); return showVisualize(job, true); },
  },
};

async function poll(delay = 300) {
  const job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`);
  const kind = KINDS[job.kind] || KINDS.attribution;
  document.getElementById("kind").textContent = job.kind && job.kind !== "attribution" ? `· ${job.kind}` : "";
  document.getElementById("status").textContent = job.status;
  document.getElementById("status").className = `status ${job.status}`;
  const [text, value, max] = progressOf(job);
  document.getElementById("counts").textContent = text;
  const bar = document.getElementById("progress");
  bar.max = Math.max(max, 1);
  bar.value = value;
  if (job.error) showError("job-error", new Error(job.error));
  if (FINAL.has(job.status)) {
    bar.hidden = job.status === "succeeded";
    await kind.final(job);
    document.body.dataset.ready = "1";  // for tests and scripts: the page has rendered
  } else {
    if (kind.running) await kind.running(job);
    setTimeout(() => poll(Math.min(delay * 1.5, 2000)).catch(fail), delay);
  }
}

function fail(error) {
  showError("job-error", error);
  document.body.dataset.ready = "error";
}

poll().catch(fail);
