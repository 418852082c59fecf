// Live status of one task. EventSource cannot send an Authorization header, so the stream
// (GET /api/v1/streamTask/{model}?taskId=...) is read with fetch() and parsed here, resuming
// with Last-Event-ID when the server ends it early. A server without the stream (404, 405, or
// an answer that is not text/event-stream) is long-polled instead: statusTask with wait=N.

import {ApiError, api, authHeaders, errorOf} from "./api.js";

// Short waits: the wait answers at once when the task ends, and otherwise after this long with
// the task as it is then, so that the stage shown stays current.
const POLL_WAIT_S = 2;
const MAX_FAILURES = 4;

/**
 * An incremental parser of the text/event-stream format (the WHATWG HTML standard, "server-sent
 * events"): feed it decoded text; it calls ``onEvent({event, data, id})`` for each message and
 * remembers the last event id and the retry delay the server asked for.
 */
export function eventParser(onEvent) {
  let buffer = "";
  let data = [];
  let type = "";
  const state = {lastEventId: "", retryMs: null};

  function line(text) {
    if (text === "") {
      if (data.length) onEvent({event: type || "message", data: data.join("\n"),
                                id: state.lastEventId});
      data = [];
      type = "";
      return;
    }
    if (text.startsWith(":")) return;  // a comment: keep-alive
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) state.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) state.retryMs = Number(value);
  }

  return {
    state,
    feed(text) {
      buffer += text;
      for (;;) {
        const match = /\r\n|\r|\n/.exec(buffer);
        // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
        if (!match || (match[0] === "\r" && match.index === buffer.length - 1)) return;
        line(buffer.slice(0, match.index));
        buffer = buffer.slice(match.index + match[0].length);
      }
    },
  };
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
});

class NoStream extends Error {}

/**
 * Follow a task until it ends. ``onStatus(data)`` for each snapshot (statusTask's data, plus
 * queuePosition while queued), ``onTransport("stream" | "polling")`` once the way is known.
 * Resolves with statusTask's data for the finished task, or undefined when ``signal`` aborts.
 * Rejects with ApiError when the task cannot be read (401, 404...).
 */
export async function watchTask({model, taskId, onStatus, onTransport, signal}) {
  try {
    return await stream({model, taskId, onStatus, onTransport, signal});
  } catch (err) {
    if (!(err instanceof NoStream)) throw err;
  }
  onTransport?.("polling");
  return poll({model, taskId, onStatus, signal});
}

async function stream({model, taskId, onStatus, onTransport, signal}) {
  let failures = 0;
  let retryMs = 1000;
  let lastEventId = "";
  let announced = false;
  while (!signal?.aborted) {
    let response;
    try {
      const headers = {...authHeaders(), Accept: "text/event-stream"};
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      response = await fetch(api.streamUrl(model, taskId), {headers, signal, cache: "no-store"});
    } catch (err) {
      if (signal?.aborted) return undefined;
      if (++failures >= MAX_FAILURES) throw new NoStream(String(err));
      await sleep(retryMs * failures, signal);
      continue;
    }
    const type = response.headers.get("content-type") || "";
    if (response.ok && !type.startsWith("text/event-stream")) throw new NoStream("not a stream");
    if (!response.ok) {
      if ([404, 405, 501].includes(response.status) && !announced) throw new NoStream("absent");
      let parsed = null;
      try { parsed = await response.json(); } catch { parsed = null; }
      const error = errorOf(response, parsed);
      if (response.status !== 429 && response.status < 500) throw error;
      if (++failures >= MAX_FAILURES) throw new NoStream(error.message);
      await sleep((error.retryAfter ?? retryMs / 1000) * 1000, signal);
      continue;
    }
    if (!announced) {
      announced = true;
      onTransport?.("stream");
    }
    failures = 0;
    const outcome = await readStream(response, onStatus, signal);
    if (outcome.lastEventId) lastEventId = outcome.lastEventId;
    if (outcome.retryMs !== null) retryMs = outcome.retryMs;
    if (outcome.done) return outcome.done;
    if (!signal?.aborted) await sleep(retryMs, signal);  // ended early: resume from the last id
  }
  return undefined;
}

async function readStream(response, onStatus, signal) {
  let done = null;
  const parser = eventParser(({event, data}) => {
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    if (event === "status") onStatus(parsed);
    else if (event === "done") done = parsed.data ?? parsed;
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    while (!done) {
      const {value, done: ended} = await reader.read();
      if (ended) break;
      parser.feed(value);
    }
  } catch (err) {
    if (!signal?.aborted && err.name !== "AbortError" && !(err instanceof TypeError)) throw err;
  } finally {
    reader.cancel().catch(() => {});
  }
  return {done, lastEventId: parser.state.lastEventId, retryMs: parser.state.retryMs};
}

async function poll({model, taskId, onStatus, signal}) {
  let wait = POLL_WAIT_S;
  let failures = 0;
  while (!signal?.aborted) {
    let data;
    try {
      data = await api.status(model, taskId, {wait, signal});
    } catch (err) {
      if (signal?.aborted || err.name === "AbortError") return undefined;
      if (err instanceof ApiError && err.status === 400 && err.field === "wait" && wait) {
        wait = 0;  // a server without the wait extension: plain polling
        continue;
      }
      const transient = err instanceof ApiError && (err.status === 0 || err.status === 429 ||
                                                    err.status >= 500);
      if (!transient || ++failures >= MAX_FAILURES) throw err;
      await sleep((err.retryAfter ?? 2) * 1000, signal);
      continue;
    }
    failures = 0;
    if (data.state !== "processing") return data;
    onStatus(data);
    if (!wait) await sleep(2000, signal);
  }
  return undefined;
}
