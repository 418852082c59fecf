// The key's own tasks (GET /api/v1/tasks), newest first, a page at a time; a click opens one.

import {api} from "./api.js";
import {byId, clear, h} from "./dom.js";
import {dateTime, shortId, usd} from "./format.js";
import {Run} from "./runs.js";

const MODELS_ITEM = "imagegate.taskModels";  // task id -> model, for tasks submitted here
const REMEMBERED = 500;
const PAGE = 20;

const $ = {
  body: byId("tasks-body"),
  head: byId("tasks-head"),
  empty: byId("tasks-empty"),
  more: byId("tasks-more"),
  state: byId("tasks-state"),
  model: byId("tasks-model"),
  refresh: byId("tasks-refresh"),
  error: byId("tasks-error"),
  detail: byId("task-detail"),
};

let cursor = null;
let loading = null;
let reloads = 0;  // an answer asked for before the latest reload is dropped
let opened = null;
let hooks = {};

/** The model of a task listed without one: the filter's, else the one remembered here. */
function modelOf(taskId) {
  return $.model.value || remembered()[taskId] || null;
}

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(MODELS_ITEM) || "{}");
  } catch {
    return {};
  }
}

export function rememberModel(taskId, model) {
  const entries = Object.entries(remembered()).slice(-(REMEMBERED - 1));
  entries.push([taskId, model]);
  localStorage.setItem(MODELS_ITEM, JSON.stringify(Object.fromEntries(entries)));
}

export function forgetModels() {
  localStorage.removeItem(MODELS_ITEM);
}

export const tasks = {
  setHooks(value) {
    hooks = value;
  },

  setModels(models) {
    const previous = $.model.value;
    clear($.model).append(h("option", {value: "", text: "All models"}),
                          ...models.map((m) => h("option", {value: m.id, text: m.id})));
    $.model.value = models.some((m) => m.id === previous) ? previous : "";
  },

  /** Load the first page again. */
  reload() {
    cursor = null;
    return load(true);
  },

  reset() {
    clear($.body);
    closeDetail();
  },
};

function load(fresh) {
  if (fresh) reloads += 1;
  else if (loading) return loading;  // "Load more" while a page is coming: that page
  const mine = reloads;
  const params = {limit: String(PAGE)};
  if (!fresh && cursor) params.cursor = cursor;
  if ($.state.value) params.state = $.state.value;
  if ($.model.value) params.model = $.model.value;
  $.error.hidden = true;
  const request = api.tasks(params).then((page) => {
    if (mine !== reloads) return;
    if (fresh) clear($.body);
    $.body.append(...page.tasks.map(row));
    cursor = page.nextCursor;
    $.more.hidden = !cursor;
    $.empty.hidden = $.body.childElementCount > 0;
    $.head.hidden = !$.empty.hidden;
  }).catch((err) => {
    if (mine !== reloads) return;
    $.error.textContent = `The task list cannot be read (${err.status || "no answer"}): ` +
                          err.message;
    $.error.hidden = false;
  }).finally(() => {
    if (loading === request) loading = null;
  });
  loading = request;
  return request;
}

function stateLabel(task) {
  if (task.state === "failed" && task.failCode === "Canceled") return ["cancelled", "Cancelled"];
  return {processing: ["running", "Processing"], success: ["succeeded", "Succeeded"],
          failed: ["failed", "Failed"]}[task.state] ?? ["", task.state];
}

function row(task) {
  const [kind, label] = stateLabel(task);
  const open = h("button", {type: "button", class: "link-button",
                            "aria-label": `Open task ${task.taskId}`,
                            onclick: () => openTask(task)},
                 h("code", {}, shortId(task.taskId)));
  return h("tr", {dataset: {taskId: task.taskId}},
    h("td", {}, open, task.source ? h("span", {class: "muted small"}, ` ${task.source}`) : null),
    h("td", {class: "col-created"}, dateTime(task.createTime)),
    h("td", {}, h("span", {class: `badge state ${kind}`}, label)),
    h("td", {class: "muted col-stage"}, task.stage ?? "—"),
    h("td", {class: "num"}, task.cost !== undefined ? usd(task.cost) : "—"));
}

function closeDetail() {
  opened?.stop();
  opened = null;
  clear($.detail).hidden = true;
}

function openTask(task) {
  closeDetail();
  for (const tr of $.body.querySelectorAll("tr")) {
    tr.classList.toggle("selected", tr.dataset.taskId === task.taskId);
  }
  const model = modelOf(task.taskId);
  const close = h("button", {type: "button", class: "button ghost small",
                             onclick: () => { closeDetail(); }}, "Close");
  $.detail.append(h("div", {class: "section-head"},
                    h("h3", {}, "Task ", h("code", {}, task.taskId)), close));
  $.detail.hidden = false;
  opened = new Run({container: $.detail, model: model ?? "", taskId: task.taskId, data: task,
                    hooks});
  $.detail.append(opened.el);  // below the heading
  if (task.state === "processing") {
    if (model) opened.watch();
    else opened.showMessage("Choose this task's model in the filter above to follow it live " +
                            "and to cancel it.", "info");
  }
  $.detail.scrollIntoView({behavior: "smooth", block: "nearest"});
  close.focus();
}

$.more.addEventListener("click", () => load(false));
$.refresh.addEventListener("click", () => tasks.reload());
$.state.addEventListener("change", () => tasks.reload());
$.model.addEventListener("change", () => tasks.reload());
