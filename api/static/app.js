// Shared by the pages: calls to the v1 API with the optional key from sessionStorage.
"use strict";

const KEY_NAME = "saliency-api-key";

function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${code}, HTTP ${status})`);
    this.status = status;
    this.code = code;
  }
}

// Ask for a key once; the page reloads with it. The default (no keys configured) never asks.
function askForKey() {
  const form = document.getElementById("auth");
  form.hidden = false;
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_NAME, document.getElementById("auth-key").value.trim());
    location.reload();
  };
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", "Bearer " + apiKey());
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) askForKey();
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return body;
}

// Artifact URLs on the API itself need the key when keys are on; presigned URLs never do.
async function showImage(img, url) {
  if (apiKey() && new URL(url, location.href).origin === location.origin) {
    const response = await fetch(url, { headers: { Authorization: "Bearer " + apiKey() } });
    if (response.ok) img.src = URL.createObjectURL(await response.blob());
  } else {
    img.src = url;
  }
}

// A link to a file: signed and presigned URLs open as they are; an API route (the report's
// JSON, say) is fetched with the key when keys are on, then saved from a blob.
function artifactLink(url, name, label) {
  const a = el("a", { href: url, download: name }, label);
  if (apiKey() && new URL(url, location.href).origin === location.origin) {
    a.addEventListener("click", async (event) => {
      event.preventDefault();
      const r = await fetch(url, { headers: { Authorization: "Bearer " + apiKey() } });
      const tmp = el("a", { href: URL.createObjectURL(await r.blob()), download: name });
      tmp.click();
    });
  }
  return a;
}

// An element with properties (`class`, `text`, data-*, attributes) and children.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k in node && !k.startsWith("data-")) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// An input by a short name, and the full one for hover: its id, or its file's name where the
// id is a URI (a manifest line without an id takes its URI); `fallback` where neither is known.
function shortName(id, uri, fallback) {
  const full = [...new Set([id, uri].filter(Boolean).map(String))];
  const named = id && !String(id).includes("://") ? String(id)
    : String(id || uri || "").split("/").filter(Boolean).pop();
  return [named || fallback, full.join("\n") || undefined];
}

function percent(x, digits = 0) {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)}%`;
}

function fixed(x, digits = 2) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();  // secure contexts only
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function showError(id, error) {
  const el = document.getElementById(id);
  el.textContent = error.message || String(error);
  el.hidden = false;
}

if (apiKey()) {
  document.getElementById("auth-state").hidden = false;
  document.getElementById("forget-key").onclick = () => {
    sessionStorage.removeItem(KEY_NAME);
    location.reload();
  };
}
