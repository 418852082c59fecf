// Live status of one task. EventSource cannot send an Authorization header, so the stream
// (GET /api/v1/streamTask/{model}?taskId=...) is read with fetch() and parsed here, resuming
// with Last-Event-ID when the server ends it early. A server without the stream (404, 405, or
// an answer that is not text/event-stream) is long-polled instead: statusTask with wait=N.

import {ApiError, api, authHeaders, errorOf} from "./api.js";

// Short waits: the wait answers at once when the task ends, and otherwise after this long with
// the task as it is then, so that the stage shown stays current.
const POLL_WAIT_S = 2;
const MAX_FAILURES = 4;
// The server sends a keep-alive comment every 15 s; this long without a byte, the connection
// is taken for dead (a half-open one never ends by itself) and opened again.
export const timing = {streamIdleMs: 45_000};

/**
 * An incremental parser of the text/event-stream format (the WHATWG HTML standard, "server-sent
 * events") for one connection: feed it decoded text; it calls ``onEvent({event, data, id})``
 * for each message and keeps the retry delay the server asked for and the last event id. An
 * ``id`` line fills the last event ID buffer, which becomes ``state.lastEventId`` (the id to
 * resume from) only when its event is dispatched: a stream cut inside an event must not resume
 * past it. A reconnection gets a new parser, started from the previous one's ``state``.
 */
export function eventParser(onEvent, {lastEventId = "", retryMs = null} = {}) {
  let buffer = "";
  let data = [];
  let type = "";
  let idBuffer = lastEventId;
  const state = {lastEventId, retryMs};

  function line(text) {
    if (text === "") {
      state.lastEventId = idBuffer;
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
    else if (field === "id" && !value.includes("\0")) idBuffer = value;
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
    // Aborts this connection alone when it goes quiet; ``signal`` stops the whole watch.
    const idle = new AbortController();
    const unanswered = setTimeout(() => idle.abort(), timing.streamIdleMs);
    try {
      const headers = {...authHeaders(), Accept: "text/event-stream"};
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const either = signal ? AbortSignal.any([signal, idle.signal]) : idle.signal;
      response = await fetch(api.streamUrl(model, taskId),
                             {headers, signal: either, cache: "no-store"});
    } catch (err) {
      if (signal?.aborted) return undefined;
      if (++failures >= MAX_FAILURES) throw new NoStream(String(err));
      await sleep(retryMs * failures, signal);
      continue;
    } finally {
      clearTimeout(unanswered);
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
    const outcome = await readStream(response, onStatus, idle, {lastEventId, retryMs});
    lastEventId = outcome.lastEventId;
    if (outcome.retryMs !== null) retryMs = outcome.retryMs;
    if (outcome.done) return outcome.done;
    if (!signal?.aborted) await sleep(retryMs, signal);  // ended early: resume from the last id
  }
  return undefined;
}

/**
 * The events of one connection until ``done`` or the stream's end: a connection that fails, or
 * sends nothing for ``timing.streamIdleMs`` (then ``idle`` aborts it), ends the read, to be
 * resumed. Only the reads are guarded: an error of ``onStatus`` is not a lost connection.
 */
async function readStream(response, onStatus, idle, resumeFrom) {
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
  }, resumeFrom);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let timer;
  const quiet = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), timing.streamIdleMs);
  };
  try {
    quiet();
    while (!done) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        break;  // the connection failed, or was aborted (by the page, or as idle)
      }
      if (chunk.done) break;
      quiet();
      parser.feed(chunk.value);
    }
  } finally {
    clearTimeout(timer);
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
