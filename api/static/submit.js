// `/`: a job of any kind. Attribution (methods with their parameters, target, the audit's
// sanity check) and top_activations take images (dropped, picked, an example) or a data set;
// visualize takes objectives only. POST /v1/jobs, then the job's page.
"use strict";

const chosen = [];
const drop = document.getElementById("drop");
const picker = document.getElementById("files");

function addFiles(files) {
  for (const file of files) chosen.push(file);
  const list = document.getElementById("file-list");
  list.replaceChildren(...chosen.map((f) => {
    const li = document.createElement("li");
    li.textContent = `${f.name} (${Math.ceil(f.size / 1024)} KiB)`;
    return li;
  }));
}

picker.addEventListener("change", () => { addFiles(picker.files); picker.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  addFiles(e.dataTransfer.files);
});

// Which kind of job the form builds: the fields of the other kinds are hidden.
function kind() {
  return document.querySelector("input[name=kind]:checked").value;
}

function showKind() {
  for (const node of document.querySelectorAll("[data-kinds]")) {
    node.hidden = !node.dataset.kinds.split(" ").includes(kind());
  }
}
for (const radio of document.querySelectorAll("input[name=kind]")) radio.addEventListener("change", showKind);
showKind();

const targetKind = document.getElementById("target-kind");
targetKind.addEventListener("change", () => {
  const k = targetKind.value;
  document.getElementById("target-k").hidden = !(k === "class" || k === "topk");
  document.getElementById("target-layer").hidden = k !== "layer";
  document.getElementById("target-channel").hidden = k !== "layer";
});

const value = (id) => document.getElementById(id).value.trim();
const integer = (id) => parseInt(value(id), 10);

function target() {
  switch (targetKind.value) {
    case "class": return { class: integer("target-k") };
    case "topk": return { topk: integer("target-k") };
    case "layer": return { layer: value("target-layer"), channel: integer("target-channel") };
    case "label": return "label";
    default: return "predicted";
  }
}

// A method by its name, or as {name, ...} with the parameters changed from their defaults
// (a parameter left at its default is left to the service, which echoes it filled in).
function methodSpec(name) {
  const changed = {};
  for (const input of document.querySelectorAll(`[data-method="${name}"]`)) {
    const raw = input.value.trim();
    if (raw === "" || raw === input.dataset.default) continue;
    const type = input.dataset.type;
    changed[input.dataset.param] = type === "int" ? parseInt(raw, 10) : type === "float" ? Number(raw) : raw;
  }
  return Object.keys(changed).length ? { name, ...changed } : name;
}

// "0, 1, 2" as [0, 1, 2]; an error naming `what` otherwise.
function integers(text, what) {
  const parts = text.split(",").map((p) => p.trim()).filter(Boolean);
  if (!parts.length || parts.some((p) => !/^\d+$/.test(p))) {
    throw new Error(`${what}: whole numbers separated by commas, e.g. 0, 1, 2`);
  }
  return parts.map(Number);
}

function attributionSpec(model) {
  const checked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((i) => i.value);
  const spec = { model, methods: checked("methods").map(methodSpec), target: target(),
                 reduce: value("reduce"), outputs: checked("outputs") };
  const sample = integer("sanity-sample");
  if (sample > 0) spec.audit = { sanity: { sample } };
  return spec;
}

function topActivationsSpec(model) {
  const channels = value("top-channels");
  const spec = { kind: "top_activations", model, layer: value("top-layer"),
                 channels: channels === "all" ? "all" : integers(channels, "Channels"),
                 k: integer("top-k") };
  if (value("top-method")) spec.methods = [value("top-method")];
  return spec;
}

function visualizeSpec(model) {
  const spec = { kind: "visualize", model, starts: integer("vis-starts"), seed: integer("vis-seed") };
  if (document.querySelector("input[name=objective-kind]:checked").value === "class") {
    spec.objective = integers(value("vis-classes"), "Classes").map((c) => ({ class: c }));
  } else {
    const objective = { layer: value("vis-layer"), channel: integer("vis-channel") };
    if (value("vis-position")) objective.position = integers(value("vis-position"), "Position");
    spec.objective = [objective];
  }
  for (const [id, field] of [["vis-steps", "steps"], ["vis-size", "size"]]) {
    if (value(id)) spec[field] = integer(id);
  }
  if (value("vis-parametrization")) spec.regularizers = { parametrization: value("vis-parametrization") };
  return spec;
}

// The data set the form names, or null: a manifest, or a prefix with or without labels.
function dataset() {
  const uri = value("dataset-uri");
  if (!uri) return null;
  const form = value("dataset-form");
  if (form === "manifest") return { manifest: uri };
  return form === "prefix" ? { prefix: uri } : { prefix: uri, labels: form };
}

async function loadModels() {
  const select = document.getElementById("model");
  const body = await api("/v1/models");
  const models = Array.isArray(body) ? body : body.models;
  select.replaceChildren(...models.map((m) => {
    const option = new Option(m.name, m.name);
    option.title = `${m.architecture || "exported program"}, ${m.num_classes} classes`;
    return option;
  }));
  if (!models.length) {
    select.replaceChildren(new Option("no model registered", ""));
    document.getElementById("model-info").textContent =
      "Register one first: saliency models register --name … --architecture … --weights FILE";
  }
}

// The request: JSON for a data set or a visualization, multipart with the images otherwise.
function request(files) {
  const model = value("model");
  const k = kind();
  const spec = k === "visualize" ? visualizeSpec(model)
    : k === "top_activations" ? topActivationsSpec(model) : attributionSpec(model);
  const data = k === "visualize" ? null : dataset();
  if (k === "visualize" || data) {
    if (data) spec.dataset = data;
    return { body: JSON.stringify(spec), headers: { "Content-Type": "application/json" },
             what: data ? "submitting the data set…" : "submitting…" };
  }
  if (!files.length) throw new Error("Choose at least one image, or name a data set.");
  const form = new FormData();
  form.append("spec", JSON.stringify(spec));
  for (const file of files) form.append("images", file, file.name);
  return { body: form, headers: {}, what: `uploading ${files.length} image(s)…` };
}

async function submitJob(files) {
  const button = document.getElementById("submit");
  document.getElementById("error").hidden = true;
  let req;
  try {
    req = request(files);
  } catch (error) {
    return showError("error", error);
  }
  button.disabled = true;
  document.getElementById("submit-state").textContent = req.what;
  try {
    const job = await api("/v1/jobs", { method: "POST", body: req.body,
                                        headers: { ...req.headers, "Idempotency-Key": uuid4() } });
    location.assign(`/jobs/${encodeURIComponent(job.id)}`);
  } catch (error) {
    showError("error", error);
    button.disabled = false;
    document.getElementById("submit-state").textContent = "";
  }
}

document.getElementById("submit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitJob(chosen);
});

// "Try an example": one of the bundled photos, sent like a chosen file, to the chosen model
// (the built-in efficientnet_lite0 is picked when there is one).
const BUILTIN_EXAMPLE_MODEL = "efficientnet_lite0";

async function loadExamples() {
  const select = document.getElementById("example");
  const { examples } = await api("/v1/examples");
  select.replaceChildren(...examples.map((e) => {
    const option = new Option(e.title, e.name);
    option.dataset.url = e.url;
    option.dataset.filename = e.filename;
    option.dataset.credit = `${e.credit}, ${e.licence}`;
    return option;
  }));
  const credit = () => {
    document.getElementById("example-credit").textContent =
      select.selectedOptions[0] ? `photo: ${select.selectedOptions[0].dataset.credit}` : "";
  };
  select.addEventListener("change", credit);
  credit();
}

document.getElementById("try-example").addEventListener("click", async () => {
  const option = document.getElementById("example").selectedOptions[0];
  if (!option || !option.value) return;
  try {
    const headers = apiKey() ? { Authorization: "Bearer " + apiKey() } : {};
    const response = await fetch(new URL(option.dataset.url).pathname, { headers });
    if (!response.ok) throw new Error(`example ${option.value}: HTTP ${response.status}`);
    const blob = await response.blob();
    await submitJob([new File([blob], option.dataset.filename, { type: blob.type })]);
  } catch (error) {
    showError("error", error);
  }
});

loadModels()
  .then(() => {
    const select = document.getElementById("model");
    if ([...select.options].some((o) => o.value === BUILTIN_EXAMPLE_MODEL)) {
      select.value = BUILTIN_EXAMPLE_MODEL;
    }
  })
  .catch((error) => showError("error", error));
loadExamples().catch((error) => showError("error", error));
