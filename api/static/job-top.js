// `/jobs/{id}` of a `top_activations` job: per channel one row with its grid (the paper's
// layout: projections beside their patches) and the activation values of its top k.
"use strict";

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

function channelRow(ch, methods) {
  const img = el("img", { class: "channel-grid", alt: `channel ${ch.channel}: its top ${ch.top.length}` });
  showImage(img, ch.grid);
  const table = el("table", { class: "figures top" },
    el("thead", {}, el("tr", {}, ...["#", "activation", "input", "position [y, x]", "files"].map((h) =>
      el("th", { text: h })))),
    el("tbody", {}, ...ch.top.map((entry, rank) => topEntryRow(entry, rank, ch.channel, methods))));
  return el("section", { class: "channel", "data-channel": ch.channel },
    el("h3", { text: `channel ${ch.channel}` }, el("span", { class: "muted",
      text: ` · activations ${ch.top.map((t) => Number(t.activation).toFixed(2)).join(", ")}` })),
    el("div", { class: "channel-row" }, img, table));
}

async function showTopActivations(job) {
  const report = await api(`/v1/jobs/${encodeURIComponent(job.id)}/report`);
  const root = document.getElementById("channels");
  root.replaceChildren(
    el("p", { class: "muted", text: `Layer ${report.layer}: each channel's top ${report.k} inputs by ` +
      `their highest activation, with the ${report.methods.join(", ")} projection of that one unit ` +
      "beside the input patch it sees (each projection scaled on its own)." }),
    ...report.channels.map((ch) => channelRow(ch, report.methods)));
  if (!report.channels.length) root.append(el("p", { class: "muted", text: "No channel was projected." }));
}
