// A task on the page: its live state (stage, queue position, elapsed time), a Cancel button
// while it runs, then its images with download links, or why it failed; for a task submitted
// here, the curl command of its submit.

import {ApiError, api, resultUrls} from "./api.js";
import {curlCommand, shortened} from "./curl.js";
import {h} from "./dom.js";
import {seconds, shortId, usd} from "./format.js";
import {watchTask} from "./stream.js";

const STEPS = [
  ["queued", "Queued"], ["running", "Running"], ["generating", "Generating"],
  ["storing", "Storing"], ["done", "Done"],
];
const STEP_OF = {queued: 0, retrying: 0, running: 1, fetching: 1, generating: 2, storing: 3,
                 done: 4};
const STAGE_TEXT = {running: "a worker took it", fetching: "fetching the reference images",
                    generating: "generating", storing: "storing the images"};

const ticking = new Set();
setInterval(() => { for (const run of ticking) run.tick(); }, 250);

/**
 * A card for one task, added at the top of ``container``.
 * ``request``: {bodyText} of a submit made here (gives the curl command), or null.
 * ``data``: statusTask's data when already known (a task opened from the list).
 * ``hooks.onEnd(data)``: called once when the task is seen to end.
 */
export class Run {
  constructor({container, model, taskId, request = null, data = null, startedAt = null,
               hooks = {}}) {
    this.model = model;
    this.taskId = taskId;
    this.request = request;
    this.hooks = hooks;
    this.startedAt = startedAt ?? data?.createTime ?? Date.now();
    this.data = data ?? {taskId, state: "processing", stage: "queued"};
    this.cancelling = false;
    this.controller = new AbortController();
    this.el = this.build();
    container.prepend(this.el);
    this.render();
  }

  build() {
    const input = this.request ? JSON.parse(this.request.bodyText).input : null;
    this.badge = h("span", {class: "badge state"});
    this.statusText = h("span", {class: "status-text"});
    this.elapsed = h("span", {class: "elapsed muted"});
    this.steps = h("ol", {class: "steps", "aria-hidden": "true"},
                   STEPS.map(([, label]) => h("li", {}, label)));
    this.cancelButton = h("button", {type: "button", class: "button danger small",
                                     onclick: () => this.cancel()}, "Cancel");
    this.followButton = h("button", {type: "button", class: "button ghost small", hidden: true,
                                     onclick: () => this.watch()}, "Follow again");
    this.message = h("p", {class: "run-message", hidden: true});
    this.gallery = h("div", {class: "gallery"});
    const meta = input
      ? [this.model, input.mode, input.aspect_ratio, input.resolution, input.output_format]
        .concat(input.num_images ? [`${input.num_images} images`] : [])
      : [this.model];
    const title = input ? input.prompt : `Task ${shortId(this.taskId)}`;
    return h("article", {class: "card run", "aria-label": `Task ${this.taskId}`,
                         dataset: {taskId: this.taskId}},
      h("div", {class: "run-head"},
        h("div", {class: "run-title"},
          h("p", {class: "prompt", title}, title),
          h("p", {class: "meta muted"}, meta.join(" · "))),
        this.badge),
      h("div", {class: "run-status"},
        h("p", {class: "status-line"},
          // Only the state is announced, not the clock that ticks beside it.
          h("span", {role: "status", "aria-live": "polite"}, this.statusText), this.elapsed),
        h("span", {class: "run-actions"}, this.followButton, this.cancelButton)),
      this.steps,
      this.message,
      this.gallery,
      h("p", {class: "task-id muted small"}, "Task ", h("code", {}, this.taskId)),
      this.request ? this.curlBlock() : null);
  }

  curlBlock() {
    const command = curlCommand(location.origin, this.model, this.request.bodyText);
    const display = shortened(command);
    const copy = h("button", {type: "button", class: "button ghost small copy"}, "Copy");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(command);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Copy failed: select the text";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
    return h("details", {class: "curl"},
      h("summary", {}, "curl command"),
      h("div", {class: "curl-body"},
        h("pre", {}, h("code", {class: "curl-command"}, display)),
        h("div", {class: "curl-foot"},
          h("span", {class: "muted small"}, display === command
            ? "Set IMAGEGATE_API_KEY to your key first."
            : "Set IMAGEGATE_API_KEY to your key first. Long data: URIs are shortened here; " +
              "Copy copies the exact command."),
          copy)));
  }

  /** Follow the task until it ends (stream, else long polling). */
  async watch() {
    ticking.add(this);
    this.followButton.hidden = true;
    if (this.message.dataset.live) this.message.hidden = true;
    try {
      const done = await watchTask({
        model: this.model, taskId: this.taskId, signal: this.controller.signal,
        onStatus: (data) => this.update(data),
        onTransport: (way) => { this.el.dataset.transport = way; },
      });
      if (done) this.finish(done);
    } catch (err) {
      if (err.name === "AbortError") return;
      // The task goes on at the server; it can be followed again once the server answers.
      const reason = /[.?!]$/.test(err.message) ? err.message : `${err.message}.`;
      this.showMessage(`Live status stopped: ${reason} The task goes on at the server: ` +
                       "Follow again when it answers.", "error");
      this.message.dataset.live = "stopped";
      this.followButton.hidden = false;
    } finally {
      ticking.delete(this);
      this.tick();
    }
  }

  stop() {
    this.controller.abort();
    ticking.delete(this);
  }

  update(data) {
    this.data = {...this.data, ...data};
    if (data.state === "processing" && data.stage !== "queued" && data.stage !== "retrying") {
      delete this.data.queuePosition;
    }
    this.render();
  }

  finish(data) {
    this.data = data;
    this.render();
    this.hooks.onEnd?.(data);
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      const answer = await api.cancel(this.model, this.taskId);
      this.cancelling = answer.state === "cancelling";
      this.render();
      this.hooks.onCancel?.(answer);
    } catch (err) {
      this.cancelButton.disabled = false;
      const status = err instanceof ApiError && err.status ? ` (${err.status})` : "";
      this.showMessage(`Cancel refused${status}: ${err.message}`, "error");
    }
  }

  showMessage(text, kind) {
    delete this.message.dataset.live;
    this.message.textContent = text;
    this.message.className = `run-message ${kind}`;
    this.message.hidden = false;
  }

  state() {
    const {state, stage, failCode} = this.data;
    if (state === "success") return ["succeeded", "Succeeded"];
    if (state === "failed") return failCode === "Canceled" ? ["cancelled", "Cancelled"]
      : ["failed", "Failed"];
    if (this.cancelling) return ["cancelling", "Cancelling"];
    if (stage === "queued" || stage === "retrying" || !stage) return ["queued", "Queued"];
    return ["running", "Running"];
  }

  render() {
    const [kind, label] = this.state();
    const {state, stage, queuePosition} = this.data;
    this.el.dataset.state = kind;
    this.badge.className = `badge state ${kind}`;
    this.badge.textContent = label;
    this.statusText.textContent = this.describe(kind, stage, queuePosition);
    const step = state === "processing" ? (STEP_OF[stage] ?? 0) : 5;
    [...this.steps.children].forEach((li, i) => {
      li.className = i < step ? "done" : i === step ? "current" : "";
    });
    this.steps.hidden = state === "failed";  // how far it got is not known; the message says
    this.steps.dataset.outcome = state === "processing" ? "" : kind;
    this.cancelButton.hidden = state !== "processing" || !this.model;
    this.cancelButton.disabled = this.cancelling;
    if (state === "success") this.renderImages();
    if (state === "failed") this.renderFailure();
    this.tick();
  }

  describe(kind, stage, queuePosition) {
    if (kind === "succeeded") {
      const cost = this.data.cost !== undefined ? ` · charged ${usd(this.data.cost)}` : "";
      return `Done${cost}`;
    }
    if (kind === "cancelled") return "Cancelled · refunded in full";
    if (kind === "failed") return `Failed: ${this.data.failCode} · refunded in full`;
    if (kind === "cancelling") return "Cancelling: the worker is told to stop";
    if (stage === "retrying") return "Waiting to try again";
    if (kind === "queued") {
      return queuePosition ? `Queued · position ${queuePosition} in line` : "Queued";
    }
    return `Running · ${STAGE_TEXT[stage] ?? stage}`;
  }

  tick() {
    const {state, createTime, completeTime, costTime} = this.data;
    let ms;
    if (state === "processing") ms = Date.now() - this.startedAt;
    else ms = costTime ?? (completeTime && createTime ? completeTime - createTime : null);
    this.elapsed.textContent = ms === null ? "" : ` · ${seconds(ms)}`;
  }

  renderFailure() {
    const {failCode, failMsg} = this.data;
    if (failCode !== "Canceled") this.showMessage(`${failCode}: ${failMsg ?? "no reason given"}`,
                                                  "error");
  }

  renderImages() {
    if (this.gallery.childElementCount) return;
    resultUrls(this.data).forEach((url, i) => this.gallery.append(this.figure(url, i)));
  }

  figure(url, index) {
    const name = fileName(url);
    const file = `${this.taskId.slice(0, 8)}-${name || `image-${index}`}`;
    const size = h("span", {class: "muted small"});
    const img = h("img", {src: url, alt: `Result ${index + 1} of task ${this.taskId}`,
                          loading: "lazy", decoding: "async"});
    img.addEventListener("load", () => {
      size.textContent = `${img.naturalWidth}×${img.naturalHeight}`;
      figure.dataset.size = `${img.naturalWidth}x${img.naturalHeight}`;
    });
    img.addEventListener("error", () => {
      size.textContent = "could not be loaded (expired, or blocked by the page's policy)";
    });
    const figure = h("figure", {class: "result"},
      h("a", {href: url, target: "_blank", rel: "noopener", class: "result-link",
              "aria-label": `Open result ${index + 1} full size`}, img),
      h("figcaption", {},
        h("span", {}, `Image ${index + 1} `, size),
        h("a", {href: url, download: file, class: "button ghost small download"}, "Download")));
    return figure;
  }
}

/** The last segment of a URL's path, decoded where it decodes (a stray % stays as sent). */
function fileName(url) {
  const segment = new URL(url, location.href).pathname.split("/").pop() || "";
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
