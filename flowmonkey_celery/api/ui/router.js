// Hash routes: #/executions?status=failed, #/executions/ID, ... The query holds a page's
// filters, so a filtered view is a link an operator can share.

/** The route in the hash: {path, params (URLSearchParams)}. */
export function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { path: path || "executions", params: new URLSearchParams(query) };
}

/** Set the current page's query (its filters); empty values are left out. */
export function setParams(params, { push = false } = {}) {
  const { path } = currentRoute();
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const text = query.toString();
  const hash = `#/${path}${text ? `?${text}` : ""}`;
  if (push) {
    location.hash = hash;
  } else if (location.hash !== hash) {
    history.replaceState(null, "", hash);
    window.dispatchEvent(new Event("fm:route"));
  }
}

export function go(hash) {
  location.hash = hash;
}
