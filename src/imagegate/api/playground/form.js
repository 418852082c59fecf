// The submit form: its choices come from GET /api/v1/models; it builds the submit body, and
// shows each error of a 400 answer next to the field the API named.

import {byId, clear, h} from "./dom.js";
import {bytes, usd} from "./format.js";

const $ = {
  form: byId("task-form"),
  model: byId("model"),
  prompt: byId("prompt"),
  counter: byId("prompt-counter"),
  ratio: byId("aspect-ratio"),
  resolution: byId("resolution"),
  format: byId("output-format"),
  images: byId("num-images"),
  search: byId("google-search"),
  searchHint: byId("google-search-hint"),
  refsField: byId("references-field"),
  refsList: byId("reference-list"),
  refsLimit: byId("references-limit"),
  files: byId("reference-files"),
  addUrl: byId("add-url"),
  dropzone: byId("dropzone"),
  price: byId("price"),
  sandbox: byId("sandbox-badge"),
  submit: byId("submit"),
};

let models = [];
let references = [];  // {id, kind: "url" | "file", value, name, size}
let nextRef = 1;

export const form = {
  element: $.form,

  setModels(list) {
    models = list;
    const previous = $.model.value;
    clear($.model).append(...list.map((m) => h("option", {value: m.id, text: m.id})));
    if (list.some((m) => m.id === previous)) $.model.value = previous;
    applyModel();
  },

  model() {
    return models.find((m) => m.id === $.model.value) ?? null;
  },

  /** {model, body}: the submit body as the API takes it, text-to-image without image_urls and
   * the extension num_images only when more than one image is asked for. */
  request() {
    const mode = modeValue();
    const input = {mode, prompt: $.prompt.value};
    if (mode === "image-to-image") input.image_urls = references.map((r) => r.value);
    input.aspect_ratio = $.ratio.value;
    input.resolution = $.resolution.value;
    input.output_format = $.format.value;
    input.google_search = $.search.checked;
    const count = Number($.images.value || 1);
    if (count > 1) input.num_images = count;
    return {model: $.model.value, body: {request_type: "async", input}};
  },

  /** Show ``message`` next to the field the API named; false when the form has no such field. */
  showFieldError(field, message) {
    const target = fieldTarget(field);
    if (!target) return false;
    setError(target.error, message, target.control);
    target.control?.focus();
    return true;
  },

  clearErrors() {
    for (const el of $.form.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of $.form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  },

  setBusy(busy) {
    $.submit.disabled = busy;
    $.submit.setAttribute("aria-busy", String(busy));
  },
};

function setError(errorEl, message, control) {
  errorEl.textContent = message;
  errorEl.hidden = false;
  control?.setAttribute("aria-invalid", "true");
}

function fieldTarget(field) {
  const simple = {
    "input.prompt": ["prompt-error", $.prompt],
    "input.mode": ["mode-error", byId("mode-t2i")],
    "input.aspect_ratio": ["aspect-ratio-error", $.ratio],
    "input.resolution": ["resolution-error", $.resolution],
    "input.output_format": ["output-format-error", $.format],
    "input.num_images": ["num-images-error", $.images],
    "input.google_search": ["google-search-error", $.search],
    "input.image_urls": ["references-error", $.addUrl],
    "input": ["form-error", null],
  }[field];
  if (simple) return {error: byId(simple[0]), control: simple[1]};
  const match = /^input\.image_urls\[(\d+)\]$/.exec(field);
  if (!match) return null;
  const row = $.refsList.children[Number(match[1])];
  if (!row) return {error: byId("references-error"), control: $.addUrl};
  return {error: row.querySelector(".field-error"),
          control: row.querySelector("input") ?? row.querySelector("button")};
}

function modeValue() {
  return $.form.querySelector("input[name=mode]:checked").value;
}

function fillSelect(select, values, labels = {}) {
  const previous = select.value;
  clear(select).append(...values.map((v) => h("option", {value: v, text: labels[v] ?? v})));
  if (values.includes(previous)) select.value = previous;
}

function applyModel() {
  const model = form.model();
  if (!model) return;
  fillSelect($.ratio, ["auto", ...model.aspectRatios]);
  fillSelect($.resolution, model.resolutions,
             Object.fromEntries(model.resolutions.map((r) => [r, `${r} · ${usd(model.prices[r])}`])));
  fillSelect($.format, model.outputFormats);
  fillSelect($.images, Array.from({length: model.maxImages}, (_, i) => String(i + 1)));
  $.search.disabled = !model.googleSearch;
  if (!model.googleSearch) $.search.checked = false;
  $.searchHint.textContent = model.googleSearch
    ? "Lets the model look facts up before it draws."
    : "No route of this model can ground on Google Search.";
  $.sandbox.hidden = !model.sandbox;
  $.refsLimit.textContent = `At most ${model.maxReferences}.`;
  updateCounter();
  updatePrice();
}

function updateCounter() {
  const model = form.model();
  const length = [...$.prompt.value].length;  // the API counts code points
  const max = model ? model.maxPromptChars : 0;
  $.counter.textContent = max ? `${length.toLocaleString()} / ${max.toLocaleString()}` : "";
  $.counter.classList.toggle("over", max > 0 && length > max);
}

function updatePrice() {
  const model = form.model();
  if (!model) return;
  const each = model.prices[$.resolution.value];
  const count = Number($.images.value || 1);
  $.price.textContent = each === undefined ? "" : usd(each * count);
}

function setMode(mode) {
  $.refsField.hidden = mode !== "image-to-image";
  if (mode === "image-to-image") byId("mode-i2i").checked = true;
}

// References ---------------------------------------------------------------------------------

function renderReferences() {
  clear($.refsList).append(...references.map(referenceRow));
  const model = form.model();
  const full = model && references.length >= model.maxReferences;
  $.addUrl.disabled = Boolean(full);
  $.files.disabled = Boolean(full);
}

function referenceRow(ref, index) {
  const label = `Reference ${index + 1}`;
  const errorId = `reference-${ref.id}-error`;
  const remove = h("button", {type: "button", class: "icon-button", "aria-label": `Remove ${label}`,
                              title: "Remove", onclick: () => removeReference(ref.id)}, "×");
  let body;
  if (ref.kind === "url") {
    const inputId = `reference-${ref.id}`;
    const input = h("input", {type: "url", id: inputId, value: ref.value, spellcheck: "false",
                              placeholder: "https://example.com/photo.jpg", inputmode: "url",
                              "aria-describedby": errorId,
                              oninput: (e) => { ref.value = e.target.value; }});
    body = [h("label", {for: inputId, class: "visually-hidden"}, `${label} URL`), input];
  } else {
    body = [h("img", {class: "thumb", src: ref.value, alt: "", width: 44, height: 44}),
            h("span", {class: "file-name"}, ref.name,
              h("span", {class: "muted small"}, ` · ${bytes(ref.size)}`))];
  }
  return h("li", {class: "reference", dataset: {ref: ref.id}},
           h("div", {class: "reference-main"}, h("span", {class: "ref-index"}, index + 1), ...body,
             remove),
           h("p", {class: "field-error", id: errorId, hidden: true}));
}

function removeReference(id) {
  references = references.filter((r) => r.id !== id);
  renderReferences();
  $.addUrl.focus();
}

function addUrl() {
  const ref = {id: nextRef++, kind: "url", value: ""};
  references.push(ref);
  renderReferences();
  document.getElementById(`reference-${ref.id}`)?.focus();
}

function readAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function addFiles(fileList) {
  const errorEl = byId("references-error");
  errorEl.hidden = true;
  const model = form.model();
  const room = model ? model.maxReferences - references.length : Infinity;
  const files = [...fileList];
  const refused = files.filter((f) => !f.type.startsWith("image/"));
  const images = files.filter((f) => f.type.startsWith("image/")).slice(0, Math.max(0, room));
  for (const file of images) {
    references.push({id: nextRef++, kind: "file", value: await readAsDataUri(file),
                     name: file.name, size: file.size});
  }
  const problems = [];
  if (refused.length) problems.push(`Not an image: ${refused.map((f) => f.name).join(", ")}.`);
  if (files.length - refused.length > images.length) {
    problems.push(`This model takes at most ${model.maxReferences} references.`);
  }
  if (problems.length) setError(errorEl, problems.join(" "), null);
  setMode("image-to-image");
  renderReferences();
}

// Wiring -------------------------------------------------------------------------------------

$.model.addEventListener("change", () => { applyModel(); renderReferences(); });
$.prompt.addEventListener("input", updateCounter);
$.resolution.addEventListener("change", updatePrice);
$.images.addEventListener("change", updatePrice);
for (const radio of $.form.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => setMode(modeValue()));
}
$.addUrl.addEventListener("click", addUrl);
$.files.addEventListener("change", async () => {
  await addFiles($.files.files);
  $.files.value = "";
});
$.dropzone.addEventListener("dragover", (e) => {
  e.preventDefault();
  $.dropzone.classList.add("over");
});
$.dropzone.addEventListener("dragleave", () => $.dropzone.classList.remove("over"));
$.dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  $.dropzone.classList.remove("over");
  if (e.dataTransfer?.files?.length) addFiles(e.dataTransfer.files);
});
// Once an error was shown, editing the field clears it.
$.form.addEventListener("input", (e) => {
  const control = e.target;
  if (control.getAttribute?.("aria-invalid") !== "true") return;
  control.removeAttribute("aria-invalid");
  for (const id of (control.getAttribute("aria-describedby") || "").split(/\s+/)) {
    const el = id && document.getElementById(id);
    if (el?.classList.contains("field-error")) el.hidden = true;
  }
});
