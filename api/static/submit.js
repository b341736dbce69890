// `/`: pick images (drop or file picker), a model, methods and target; POST /v1/jobs.
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

const targetKind = document.getElementById("target-kind");
targetKind.addEventListener("change", () => {
  const kind = targetKind.value;
  document.getElementById("target-k").hidden = !(kind === "class" || kind === "topk");
  document.getElementById("target-layer").hidden = kind !== "layer";
  document.getElementById("target-channel").hidden = kind !== "layer";
});

function target() {
  const n = (id) => parseInt(document.getElementById(id).value, 10);
  switch (targetKind.value) {
    case "class": return { class: n("target-k") };
    case "topk": return { topk: n("target-k") };
    case "layer": return { layer: document.getElementById("target-layer").value, channel: n("target-channel") };
    default: return "predicted";
  }
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

async function submitJob(files) {
  const button = document.getElementById("submit");
  const checked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((i) => i.value);
  document.getElementById("error").hidden = true;
  if (!files.length) return showError("error", new Error("Choose at least one image."));
  const spec = {
    model: document.getElementById("model").value,
    methods: checked("methods"),
    target: target(),
    reduce: document.getElementById("reduce").value,
    outputs: checked("outputs"),
  };
  const form = new FormData();
  form.append("spec", JSON.stringify(spec));
  for (const file of files) form.append("images", file, file.name);
  button.disabled = true;
  document.getElementById("submit-state").textContent = `uploading ${files.length} image(s)…`;
  try {
    const job = await api("/v1/jobs", { method: "POST", body: form, headers: { "Idempotency-Key": uuid4() } });
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
