// `/jobs/{id}/report`: the audit report of an attribution job, drawn from its JSON.
"use strict";

const reportJobId = document.getElementById("report").dataset.jobId;
const METRIC_TEXT = {
  energy_in_box: "share of the relevance inside the object's box or mask",
  border_energy: "share of the relevance in the outer band (10 % of the side)",
  concentration: "Gini coefficient of the relevance (0 uniform, 1 a single pixel)",
};

function itemLink(index, text, title) {
  const query = new URLSearchParams({ cursor: index, limit: 1 });
  return el("a", { href: `/jobs/${encodeURIComponent(reportJobId)}?${query}`, title }, text);
}

function itemName(entry) {
  return shortName(entry.id, entry.input && entry.input.uri, `item ${entry.index}`);
}

function className(name, index) {
  return name === undefined || name === null || String(name) === String(index)
    ? `class ${index}` : `${name} (${index})`;
}

function showAccuracy(report) {
  const c = report.counts, overall = report.accuracy.overall;
  document.getElementById("summary").textContent =
    `${c.items} items: ${c.succeeded} succeeded, ${c.failed} failed, ${c.labelled} labelled; ` +
    `${c.outputs} maps. ` + (overall === null ? "No labels, so no accuracy."
      : `Accuracy ${percent(overall, 1)} over the labelled items.`);
  document.querySelector("#per-class tbody").replaceChildren(...report.accuracy.per_class.map((r) =>
    el("tr", {}, el("td", { text: className(r.name, r.class) }), el("td", { text: r.items }),
       el("td", { text: r.correct }),
       el("td", {}, el("span", { class: "meter" }, el("i", { style: `width:${percent(r.accuracy)}` })),
          " ", percent(r.accuracy, 1)))));
  document.querySelector("#confusions tbody").replaceChildren(...report.confusions.map((r) =>
    el("tr", {}, el("td", { text: className(r.label_name, r.label) }),
       el("td", { text: className(r.predicted_name, r.predicted) }), el("td", { text: r.count }),
       el("td", { text: percent(r.share_of_label, 1) }))));
  if (!report.confusions.length) {
    document.querySelector("#confusions tbody").append(
      el("tr", {}, el("td", { colSpan: 4, class: "muted", text: "no confusions" })));
  }
}

function quantileTable(own, baseline) {
  const row = (label, f) => el("tr", {}, el("th", { text: label }),
    ...["mean", "p10", "p50", "p90"].map((q) => el("td", { text: fixed(f && f[q]) })),
    el("td", { text: f ? f.count : "–" }));
  return el("table", { class: "figures quantiles" },
    el("thead", {}, el("tr", {}, el("th"), ...["mean", "p10", "p50", "p90", "n"].map((q) =>
      el("th", { text: q })))),
    el("tbody", {}, row("method", own), row("baseline", baseline)));
}

// Why a metric has no value on any item (docs/audits.md): the box metrics need a box or mask.
const NO_DATA_TEXT = {
  energy_in_box: "no item has a box or mask, or none survived the crop",
};

function showMethods(report) {
  document.getElementById("methods").replaceChildren(...report.methods.map((m) => {
    const base = (m.baseline && m.baseline.metrics) || {};
    const drawn = Object.keys(METRIC_TEXT).filter((name) => m.metrics[name] && m.metrics[name].count);
    const empty = Object.keys(METRIC_TEXT).filter((name) => !drawn.includes(name));
    const figures = drawn.map((name) =>
      el("figure", { class: "metric", "data-metric": name },
        el("figcaption", {}, el("strong", { text: name }), " ",
           el("span", { class: "muted", text: METRIC_TEXT[name] })),
        histogramChart(m.metrics[name], base[name], { title: `${m.method}: ${name}` }),
        quantileTable(m.metrics[name], base[name])));
    const pointing = m.pointing_accuracy === null ? "no boxes, so no pointing game"
      : `pointing game: the peak lies on the object in ${percent(m.pointing_accuracy, 1)} of ` +
        `the maps (baseline ${percent(m.baseline && m.baseline.pointing_accuracy, 1)})`;
    const missing = empty.map((name) => el("li", { class: "muted", "data-metric": name },
      el("strong", { text: name }), `: not drawn, ${NO_DATA_TEXT[name] || "no item has a value"}`));
    return el("article", { class: "method", "data-method": m.method },
      el("h3", { text: `${m.method}` }, el("span", { class: "muted", text: ` · ${m.outputs} maps` })),
      el("p", { text: pointing }), el("div", { class: "metrics" }, ...figures),
      missing.length ? el("ul", { class: "no-data" }, ...missing) : null);
  }));
}

function showDependence(report) {
  const list = document.getElementById("dependence");
  list.replaceChildren(...report.input_dependence.map((d) => el("li", { "data-method": d.method },
    el("strong", { text: d.method }), `: median cosine ${fixed(d.median_cosine)} over ${d.pairs} ` +
    `pairs of different images (${d.scope === "same_class" ? "same target class" : "any class"})`,
    d.warning ? el("span", { class: "warning", text: d.warning }) : null)));
  if (!report.input_dependence.length) list.append(el("li", { class: "muted", text: "not measured" }));
}

function showSanity(report) {
  const section = document.getElementById("sanity");
  const sanity = report.sanity;
  if (!sanity) {
    section.querySelector("#sanity-charts").replaceChildren(el("p", { class: "muted",
      text: 'Not asked for: submit with "audit": {"sanity": {"sample": 16}}.' }));
    return;
  }
  const labels = sanity.blocks.map((b, i) => (i ? "+ " : "") + b);
  const charts = [["spearman", "Spearman rank correlation of |maps|"], ["ssim", "SSIM"]].map(
    ([key, title]) => {
      const series = sanity.methods.map((m) => ({ label: m.method, values: m[key] }));
      return el("figure", { class: "sanity-chart", "data-figure": key },
        el("figcaption", { text: `${title}, per randomised block (sample of ${sanity.sample})` }),
        lineChart(labels, series, { lo: 0, hi: 1, title }), legend(series));
    });
  section.querySelector("#sanity-charts").replaceChildren(...charts);
  document.getElementById("verdicts").replaceChildren(...sanity.methods.map((m) =>
    el("li", { "data-method": m.method }, el("span", { class: `verdict ${m.verdict}`, text: m.verdict }),
       " ", el("strong", { text: m.method }), ": ", m.text)));
  showBothChecks(report);
}

// The two trust checks measure different things, so any pair of outcomes can hold at once:
// each method's two outcomes, read together in words.
function bothChecksText(verdict, dependence) {
  const warned = Boolean(dependence.warning);
  const cosine = `median cosine ${fixed(dependence.median_cosine)} between different images`;
  if (verdict === "passes" && warned) {
    return "depends on the model but barely on the image. Both hold: its maps change when the " +
      `weights are randomised, yet they look alike from image to image (${cosine}). Read them as ` +
      "where the model looks for this class in general, not as the reason for one image.";
  }
  if (verdict === "passes") {
    return `depends on the model and on the image (${cosine}): both checks pass.`;
  }
  const model = verdict === "fails" ? "barely depends on the model" : "depends only partly on the model";
  if (warned) {
    return `${model} and barely on the image (${cosine}): its maps say little about the model's ` +
      "reasons for any one image.";
  }
  return `${model}, though it does depend on the image (${cosine}). Both hold: its maps follow ` +
    "the image (its edges, say) more than what the model learned.";
}

function showBothChecks(report) {
  // The sanity check covers each method name once, with its first configuration.
  const dependence = new Map();
  for (const d of report.input_dependence) if (!dependence.has(d.method)) dependence.set(d.method, d);
  const rows = report.sanity.methods.map((m) => [m, dependence.get(m.method)]).filter(([, d]) => d);
  document.getElementById("both-checks").replaceChildren(...rows.map(([m, d]) =>
    el("li", { "data-method": m.method, class: m.verdict === "passes" && d.warning ? "warning" : null },
       el("strong", { text: m.method }), ` ${bothChecksText(m.verdict, d)}`)));
  document.getElementById("both").hidden = !rows.length;
}

function showClusters(report) {
  const root = document.getElementById("clusters");
  root.replaceChildren(...report.clusters.map((group) => el("section", { class: "cluster-group" },
    el("h3", { text: `${className(group.class_name, group.class)} · ${group.method}` },
       el("span", { class: "muted",
         text: ` · ${group.size} maps in ${group.clusters.length} cluster(s)` })),
    el("div", { class: "gallery" }, ...group.clusters.map((c, k) => {
      const img = el("img", { alt: `mean map of cluster ${k}`, width: 128, height: 128 });
      showImage(img, c.mean_map);
      const shown = c.members.slice(0, 40);
      return el("figure", { class: "cluster" }, img,
        el("figcaption", {}, el("strong", { text: `${c.size} maps` }),
           ` · ${percent(c.share, 1)} of the class`,
           el("br"), `in box ${fixed(c.metrics.energy_in_box)} · border ` +
           `${fixed(c.metrics.border_energy)} · pointing ${percent(c.metrics.pointing_accuracy)}`,
           c.atypicality ? el("span", { class: "warning", text: `atypical ${fixed(c.atypicality)}` }) : null),
        el("details", {}, el("summary", { text: "members" }),
           ...shown.flatMap((i) => [itemLink(i, String(i)), " "]),
           c.members.length > shown.length ? `and ${c.members.length - shown.length} more` : null));
    })))));
  if (!report.clusters.length) {
    root.append(el("p", { class: "muted", text: "No predicted class has enough items to cluster." }));
  }
}

// The suspects the page lists: those scoring at least the report's threshold (a report
// written before it had one lists all it ranked).
function listedSuspects(report) {
  const threshold = report.suspect_threshold;
  return threshold === undefined ? report.suspects : report.suspects.filter((s) => s.score >= threshold);
}

function suspectsSummary(report, listed) {
  const threshold = report.suspect_threshold;
  if (threshold === undefined) return `The ${listed.length} highest suspect scores.`;
  const below = report.suspects.length - listed.length;
  const rest = below ? ` ${below} more ranked below it are in the report JSON.` : "";
  if (!listed.length) {
    const top = report.suspects.length ? ` The highest score is ${fixed(report.suspects[0].score)}.` : "";
    return `No item scores ${fixed(threshold)} or more: none looks right for the wrong reason.${top}${rest}`;
  }
  return `${listed.length} item(s) score at least ${fixed(threshold)}, the level from which at least one ` +
    `term of the score is large enough to be named among the reasons.${rest}`;
}

function showSuspects(report) {
  const root = document.getElementById("suspects");
  const listed = listedSuspects(report);
  document.getElementById("suspects-summary").textContent = suspectsSummary(report, listed);
  root.replaceChildren(...listed.map((s, rank) => {
    const img = s.overlay ? el("img", { alt: `suspect ${rank + 1}`, width: 128, height: 128 }) : null;
    if (img) showImage(img, s.overlay);
    const [name, title] = itemName(s);
    return el("figure", { class: "suspect", "data-index": s.index }, img,
      el("figcaption", {}, el("strong", { text: `#${rank + 1} · score ${fixed(s.score)}` }), el("br"),
         itemLink(s.index, name, title), ` · ${s.method}`,
         s.correct === false ? el("span", { class: "warning", text: "wrong prediction" }) : null),
      el("ul", { class: "reasons" }, ...s.reasons.map((r) => el("li", { text: r }))));
  }));
}

function showReport(report) {
  const state = document.getElementById("state");
  if (report.kind !== "attribution") {
    state.textContent = `A ${report.kind} job has no audit: its results are on the job page.`;
    return;
  }
  state.hidden = true;
  showAccuracy(report);
  showMethods(report);
  showDependence(report);
  showSanity(report);
  showClusters(report);
  showSuspects(report);
  document.getElementById("sections").hidden = false;
}

async function load(delay = 1000) {
  try {
    showReport(await api(`/v1/jobs/${encodeURIComponent(reportJobId)}/report`));
    document.body.dataset.ready = "1";
  } catch (error) {
    if (error.code !== "not_ready") throw error;
    document.getElementById("state").textContent = "The report is written when the job ends; waiting…";
    setTimeout(() => load(Math.min(delay * 1.5, 5000)).catch(fail), delay);
  }
}

function fail(error) {
  showError("job-error", error);
  document.body.dataset.ready = "error";
}

document.getElementById("json-link").append(artifactLink(
  `/v1/jobs/${encodeURIComponent(reportJobId)}/report`, `report-${reportJobId}.json`, "report JSON"));
load().catch(fail);
