// The API as the page calls it: same origin, the key from this browser's storage as a Bearer
// token, answers unwrapped from the {code, message, data} envelope, errors as ApiError.

const KEY_ITEM = "imagegate.apiKey";

export const keyStore = {
  get() {
    try {
      return localStorage.getItem(KEY_ITEM) || "";
    } catch {
      return "";
    }
  },
  set(key) {
    localStorage.setItem(KEY_ITEM, key);
  },
  forget() {
    localStorage.removeItem(KEY_ITEM);
  },
};

/** An answer that was not a success: HTTP status (0 when the server was not reached), the
 * envelope's error for a person, the field at fault when the API named one, Retry-After. */
export class ApiError extends Error {
  constructor(status, message, {field = null, retryAfter = null} = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field;
    this.retryAfter = retryAfter;
  }
}

export function authHeaders(key = keyStore.get()) {
  return {Authorization: `Bearer ${key}`};
}

/**
 * Call ``path`` and return the envelope's ``data`` (or the whole envelope with {envelope: true}).
 * ``body`` is a string sent as JSON. Throws ApiError.
 */
export async function call(path, {method = "GET", body, headers = {}, signal, envelope = false,
                                  key} = {}) {
  let response;
  try {
    response = await fetch(path, {
      method, body, signal, cache: "no-store",
      headers: {...authHeaders(key), ...(body ? {"Content-Type": "application/json"} : {}),
                ...headers},
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The server cannot be reached. Is it running, and is this page " +
                          "served by it?");
  }
  return readAnswer(response, envelope);
}

/** The envelope of ``response`` (its ``data`` unless ``envelope``), or ApiError. */
export async function readAnswer(response, envelope = false) {
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) throw errorOf(response, parsed);
  if (parsed === null) throw new ApiError(response.status, "The server's answer is not JSON.");
  return envelope ? parsed : parsed.data;
}

export function errorOf(response, parsed) {
  const data = parsed && typeof parsed === "object" ? parsed.data : null;
  const error = data && typeof data === "object" && data.error ? String(data.error)
    : (parsed && parsed.message) || response.statusText || `HTTP ${response.status}`;
  const retry = response.headers.get("retry-after");
  return new ApiError(response.status, error, {
    field: data && typeof data === "object" && data.field ? String(data.field) : null,
    retryAfter: retry && /^\d+$/.test(retry) ? Number(retry) : null,
  });
}

const path = (model, name) => `/api/v1/${name}/${encodeURIComponent(model)}`;
const taskQuery = (taskId) => `?taskId=${encodeURIComponent(taskId)}`;

export const api = {
  models: () => call("/api/v1/models").then((data) => data.models),
  balance: () => call("/api/v1/apikeys/current-balance"),
  submit: (model, bodyText) => call(path(model, "generateTask"), {method: "POST", body: bodyText})
    .then((data) => data.taskId),
  status: (model, taskId, {wait, signal} = {}) =>
    call(path(model, "statusTask") + taskQuery(taskId) + (wait ? `&wait=${wait}` : ""),
         {signal}),
  cancel: (model, taskId) => call(path(model, "cancelTask") + taskQuery(taskId),
                                  {method: "POST"}),
  tasks: (params) => call(`/api/v1/tasks?${new URLSearchParams(params)}`),
  streamUrl: (model, taskId) => path(model, "streamTask") + taskQuery(taskId),
};

/** The result URLs of a finished task's status data (resultJson is a string of JSON). */
export function resultUrls(data) {
  if (!data || !data.resultJson) return [];
  try {
    const urls = JSON.parse(data.resultJson).resultUrls;
    return Array.isArray(urls) ? urls.map(String) : [];
  } catch {
    return [];
  }
}
