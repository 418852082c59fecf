// The playground page: the key (kept in this browser only), the form, live runs, the balance
// and the key's tasks. Plain ES modules; nothing is loaded from another site.

import {ApiError, api, call, keyStore} from "./api.js";
import {byId, clear, show} from "./dom.js";
import {usd} from "./format.js";
import {form} from "./form.js";
import {Run} from "./runs.js";
import {forgetModels, rememberModel, tasks} from "./tasks.js";

const $ = {
  alert: byId("alert"),
  alertTitle: byId("alert-title"),
  alertText: byId("alert-text"),
  account: byId("account"),
  balance: byId("balance"),
  keyChip: byId("key-chip"),
  keyPanel: byId("key-panel"),
  keyForm: byId("key-form"),
  keyInput: byId("api-key"),
  keyError: byId("api-key-error"),
  showKey: byId("show-key"),
  keepKey: byId("keep-key"),
  workspace: byId("workspace"),
  runs: byId("runs"),
  runsEmpty: byId("results-empty"),
  clearRuns: byId("clear-results"),
  formError: byId("form-error"),
};

const runs = new Set();

// Messages at the top --------------------------------------------------------------------------

function showAlert(title, text, kind = "error") {
  $.alertTitle.textContent = title;
  $.alertText.textContent = text;
  $.alert.className = `alert ${kind}`;
  $.alert.hidden = false;
}

function hideAlert() {
  $.alert.hidden = true;
}

/** [title, text] of an error for the top of the page. */
function explain(err) {
  if (!(err instanceof ApiError)) return ["Something went wrong", String(err.message || err)];
  const s = err.status;
  const sentence = err.message.charAt(0).toUpperCase() + err.message.slice(1);
  const text = /[.?!]$/.test(sentence) ? sentence : `${sentence}.`;
  if (s === 0) return ["No answer from the server", text];
  if (s === 401) {
    return ["The API key is not accepted (401)",
            `${text} Check the key, or enter another with Change key.`];
  }
  if (s === 402) {
    const id = keyId(keyStore.get());
    const how = id ? ` On the server, imagegate accounts credit ${id} 10 adds $10.` : "";
    return ["Not enough balance (402)", `${text} Nothing was charged.${how}`];
  }
  if (s === 403) {
    return ["Not allowed for this key (403)",
            `${text} Choose another model, or use a key that may use this one.`];
  }
  if (s === 429) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    return ["Too many requests (429)", `${text}${wait}`];
  }
  if (s === 413) return ["The request is too large (413)",
                         `${text} Use smaller or fewer reference images.`];
  if (s >= 500) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    return [`The server cannot answer now (${s})`, `${text}${wait}`];
  }
  return [`The request was refused (${s})`, err.field ? `${err.field}: ${text}` : text];
}

// The key ------------------------------------------------------------------------------------

/** The key id of an imagegate key (``ig_<key id>_<secret>``), as the operator's commands
 * take it; "" for a key of another form. */
function keyId(key) {
  const match = /^ig_([0-9a-f]+)_/.exec(key || "");
  return match ? match[1] : "";
}

function keyLabel(key) {
  return key.length > 10 ? `${key.slice(0, 7)}…${key.slice(-3)}` : "key";
}

function askForKey(message = "") {
  show($.keyPanel);
  // Changing the key in use can be given up; a first key, or one refused, cannot.
  show($.keepKey, Boolean(keyStore.get()) && !$.workspace.hidden);
  $.keyError.textContent = message;
  $.keyError.hidden = !message;
  if (message) $.keyInput.setAttribute("aria-invalid", "true");
  else $.keyInput.removeAttribute("aria-invalid");
  $.keyInput.focus();
}

async function useKey(key) {
  const models = await call("/api/v1/models", {key}).then((data) => data.models);
  if (keyStore.get() !== key) clearRuns();  // another key's tasks are not this one's to watch
  keyStore.set(key);
  $.keyInput.value = "";
  show($.keyPanel, false);
  $.keyChip.textContent = keyLabel(key);
  show($.account);
  show($.workspace);
  form.setModels(models);
  tasks.setModels(models);
  tasks.reset();
  await Promise.all([refreshBalance(), tasks.reload()]);
  byId("prompt").focus();
}

async function start(key) {
  try {
    await useKey(key);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      askForKey(`This key is not accepted (401): ${err.message}`);
      $.keyInput.value = key;
    } else {
      const [title, text] = explain(err);
      showAlert(title, text);
      askForKey();
    }
  }
}

$.keyForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  hideAlert();
  const key = $.keyInput.value.trim();
  if (!key) {
    askForKey("Enter an API key.");
    return;
  }
  byId("use-key").disabled = true;
  try {
    await start(key);
  } finally {
    byId("use-key").disabled = false;
  }
});

$.showKey.addEventListener("click", () => {
  const shown = $.keyInput.type === "text";
  $.keyInput.type = shown ? "password" : "text";
  $.showKey.textContent = shown ? "Show" : "Hide";
  $.showKey.setAttribute("aria-pressed", String(!shown));
});

byId("change-key").addEventListener("click", () => askForKey());

$.keepKey.addEventListener("click", () => {
  $.keyInput.value = "";
  $.keyError.hidden = true;
  $.keyInput.removeAttribute("aria-invalid");
  show($.keyPanel, false);
  byId("prompt").focus();
});

byId("forget-key").addEventListener("click", () => {
  keyStore.forget();
  forgetModels();
  clearRuns();
  tasks.reset();
  show($.workspace, false);
  show($.account, false);
  $.balance.textContent = "—";
  showAlert("Key forgotten", "This browser no longer keeps the key.", "info");
  askForKey();
});

// Balance and runs ---------------------------------------------------------------------------

async function refreshBalance() {
  try {
    $.balance.textContent = usd(await api.balance());
  } catch (err) {
    $.balance.textContent = "?";
    if (err instanceof ApiError && err.status === 401) {
      const [title, text] = explain(err);
      showAlert(title, text);
    }
  }
}

const runHooks = {
  onEnd: () => { refreshBalance(); tasks.reload(); },
  onCancel: () => { refreshBalance(); tasks.reload(); },
};
tasks.setHooks(runHooks);

function clearRuns() {
  for (const run of runs) run.stop();
  runs.clear();
  clear($.runs);
  show($.runsEmpty);
  show($.clearRuns, false);
}

$.clearRuns.addEventListener("click", clearRuns);

// Submitting ---------------------------------------------------------------------------------

form.element.addEventListener("submit", async (e) => {
  e.preventDefault();
  hideAlert();
  form.clearErrors();
  const {model, body} = form.request();
  const bodyText = JSON.stringify(body, null, 2);
  form.setBusy(true);
  let taskId;
  try {
    taskId = await api.submit(model, bodyText);
  } catch (err) {
    refused(err);
    return;
  } finally {
    form.setBusy(false);
  }
  rememberModel(taskId, model);
  const run = new Run({container: $.runs, model, taskId, request: {bodyText},
                       startedAt: Date.now(), hooks: runHooks});
  runs.add(run);
  show($.runsEmpty, false);
  show($.clearRuns);
  run.watch();
  refreshBalance();
  tasks.reload();
});

// Ctrl+Enter (Cmd+Enter on a Mac) in the prompt submits, as in most chat and code editors.
byId("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    form.element.requestSubmit();
  }
});

function refused(err) {
  if (err instanceof ApiError && err.field && err.status >= 400 && err.status < 500 &&
      err.status !== 401 && err.status !== 429) {
    if (form.showFieldError(err.field, err.message)) return;
    $.formError.textContent = `${err.field}: ${err.message}`;
    $.formError.hidden = false;
    return;
  }
  const [title, text] = explain(err);
  showAlert(title, text);
  if (err instanceof ApiError && err.status === 401) askForKey();
}

byId("alert-close").addEventListener("click", hideAlert);

// Start --------------------------------------------------------------------------------------

const stored = keyStore.get();
if (stored) start(stored);
else askForKey();
