// `/jobs/{id}` of a `top_activations` job: per channel the Zeiler–Fergus figure — one labelled
// 3×3 block of projections per method beside the labelled block of the patches they come from,
// each projection cropped to its patch and shown at the patch's size — its warnings, and the
// activation values and files of its top k.
"use strict";

const ZF_COLUMNS = 3;
const ZF_MIN_CELL = 48;  // px: an early layer's tiny patches are enlarged to at least this,
const ZF_MAX_CELL = 96;  // and a late layer's whole-image patches shrunk to at most this

function topEntryRow(entry, rank, channel, methods) {
  const stem = `ch${channel}-${rank}`;
  const [name, title] = shortName(entry.id, typeof entry.input === "string" ? entry.input : null,
                                  inputLabel(entry.input, entry.index));
  const links = [artifactLink(entry.patch, `${stem}-patch.png`, "patch")];
  for (const m of methods) {
    const p = (entry.projections || {})[m];
    if (!p) continue;
    links.push(" ", artifactLink(p.png, `${stem}-${m}.png`, `${m} png`),
               " ", artifactLink(p.npy, `${stem}-${m}.npy`, `${m} npy`));
  }
  return el("tr", {},
    el("td", { text: rank + 1 }),
    el("td", { class: "activation", text: Number(entry.activation).toPrecision(4) }),
    el("td", { text: name, title }),
    el("td", { class: "muted", text: `[${entry.position}]` }),
    el("td", { class: "links" }, ...links));
}

// One scale per channel, so that patches keep their relative sizes (a border patch is smaller).
function zfScale(top) {
  const side = Math.max(1, ...top.map((t) => Math.max(t.patch_box[2] - t.patch_box[0],
                                                      t.patch_box[3] - t.patch_box[1])));
  if (side < ZF_MIN_CELL) return [Math.ceil(ZF_MIN_CELL / side), side];
  return [Math.min(1, ZF_MAX_CELL / side), side];
}

// One labelled block: what (a method's projections or the patches), the layer, the channel;
// each cell labelled with its rank and activation.
function zfBlock(what, kind, pictures, top, layer, channel) {
  const [scale, side] = zfScale(top);
  const cell = Math.round(side * scale);
  const cells = top.map((t, rank) => {
    const [x0, y0, x1, y1] = t.patch_box;
    const img = el("img", { width: Math.max(1, Math.round((x1 - x0) * scale)),
      height: Math.max(1, Math.round((y1 - y0) * scale)), decoding: "async",
      alt: `${what} ${rank + 1}: activation ${Number(t.activation).toPrecision(4)}` });
    showImage(img, pictures[rank]);
    return el("figure", { class: "zf-cell" },
      el("div", { class: "zf-frame", style: `width:${cell}px;height:${cell}px` }, img),
      el("figcaption", { class: "activation", text: `#${rank + 1} · ${Number(t.activation).toPrecision(4)}` }));
  });
  return el("figure", { class: "zf-block", "data-block": kind },
    el("figcaption", { class: "zf-label" }, el("strong", { text: what }),
       ` · layer ${layer} · channel ${channel}`),
    el("div", { class: "zf-cells", style: `grid-template-columns:repeat(${Math.min(ZF_COLUMNS, top.length)}, auto)` },
       ...cells));
}

function channelRow(ch, methods, layer) {
  const blocks = methods.filter((m) => ch.top.every((t) => (t.projections || {})[m])).map((m) =>
    zfBlock(`${m} projections`, m, ch.top.map((t) => t.projections[m].png), ch.top, layer, ch.channel));
  blocks.push(zfBlock("image patches", "patches", ch.top.map((t) => t.patch), ch.top, layer, ch.channel));
  const table = el("table", { class: "figures top" },
    el("thead", {}, el("tr", {}, ...["#", "activation", "input", "position [y, x]", "files"].map((h) =>
      el("th", { text: h })))),
    el("tbody", {}, ...ch.top.map((entry, rank) => topEntryRow(entry, rank, ch.channel, methods))));
  const warnings = el("ul", { class: "warnings" },
    ...(ch.warnings || []).map((w) => el("li", { class: "warning", text: w })));
  warnings.hidden = !warnings.children.length;
  return el("section", { class: "channel", "data-channel": ch.channel },
    el("h3", { text: `channel ${ch.channel}` }, el("span", { class: "muted",
      text: ` · activations ${ch.top.map((t) => Number(t.activation).toFixed(2)).join(", ")} · ` }),
      artifactLink(ch.grid, `channel-${ch.channel}.png`, "figure png")),
    warnings,
    el("div", { class: "zf-figure" }, ...blocks),
    table);
}

async function showTopActivations(job) {
  const report = await api(`/v1/jobs/${encodeURIComponent(job.id)}/report`);
  const root = document.getElementById("channels");
  const why = report.methods_reason ? `Projection: ${report.methods_reason}.`
    : `Projection: ${report.methods.join(", ")}, as asked.`;
  root.replaceChildren(
    el("p", { class: "muted", text: `Layer ${report.layer}: each channel's top ${report.k} inputs by ` +
      `their highest activation. For each, the ${report.methods.join(", ")} projection of that one ` +
      "unit, cropped to the patch of the input it sees, beside that patch (each projection scaled " +
      "on its own; a patch cut by the image's border is smaller)." }),
    el("p", { id: "projection-reason", text: why }),
    ...report.channels.map((ch) => channelRow(ch, report.methods, report.layer)));
  if (!report.channels.length) root.append(el("p", { class: "muted", text: "No channel was projected." }));
}
