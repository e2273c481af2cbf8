// The REST API, same origin. URLs are relative to the page (/<prefix>/ui/), so the dashboard
// works wherever the app is mounted. The API key lives in sessionStorage only.

const KEY_STORAGE = "flowmonkey.api-key";
const API_ROOT = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY_STORAGE),
  setKey: (key) => sessionStorage.setItem(KEY_STORAGE, key),
  forget: () => sessionStorage.removeItem(KEY_STORAGE),
};

/** The URL of an API path ("executions/x") with query parameters (arrays repeat). */
export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [name, value] of Object.entries(query)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== null && item !== undefined && item !== "") url.searchParams.append(name, item);
    }
  }
  return url;
}

/**
 * Call the API; the parsed JSON answer. Any refusal throws an ApiError with the API's code and
 * message; a 401 also tells the app to ask for a key again.
 */
export async function api(path, { method = "GET", body = undefined, query = {}, signal } = {}) {
  const headers = { Accept: "application/json" };
  const key = session.key();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "NETWORK_ERROR", "The API does not answer (is `flowmonkey api` running?)");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data?.error;
    const failure = new ApiError(
      response.status,
      error?.code || `HTTP_${response.status}`,
      error?.message || `${response.status} ${response.statusText}`,
      error?.details,
    );
    if (response.status === 401) window.dispatchEvent(new CustomEvent("fm:unauthorized", { detail: failure }));
    throw failure;
  }
  return data;
}
