// Building blocks of every page: elements (never innerHTML: every datum is text), times,
// durations, status badges, JSON views, dialogs and notices.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (name === "value" && "value" in node) {
      node.value = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("a", {href: "#/x", class: "link"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as h(). */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** Replace what `node` holds with `children` (arrays flattened, null and false left out). */
export function put(node, ...children) {
  append(clear(node), children);
  return node;
}

// -- icons (stroked 24x24 paths) -------------------------------------------------------------

const ICONS = {
  list: "M8 6h13M8 12h13M8 18h13M3 6h.01M3 12h.01M3 18h.01",
  inbox: "M22 12h-6l-2 3h-4l-2-3H2M5.45 5.11L2 12v6a2 2 0 002 2h16a2 2 0 002-2v-6l-3.45-6.89A2 2 0 0016.76 4H7.24a2 2 0 00-1.79 1.11z",
  flow: "M6 3v6M6 15v6M18 9a3 3 0 100-6 3 3 0 000 6zM6 15a3 3 0 100-6 3 3 0 000 6zM18 9a9 9 0 01-9 9",
  trigger: "M13 2L3 14h9l-1 8 10-12h-9l1-8z",
  fleet: "M2 5h20v6H2zM2 13h20v6H2zM6 8h.01M6 16h.01",
  logout: "M9 21H5a2 2 0 01-2-2V5a2 2 0 012-2h4M16 17l5-5-5-5M21 12H9",
  play: "M5 3l14 9-14 9V3z",
  stop: "M6 6h12v12H6z",
  replay: "M1 4v6h6M3.51 15a9 9 0 102.13-9.36L1 10",
  copy: "M9 9h13v13H9zM5 15H4a2 2 0 01-2-2V4a2 2 0 012-2h9a2 2 0 012 2v1",
  search: "M11 19a8 8 0 100-16 8 8 0 000 16zM21 21l-4.35-4.35",
  chevron: "M9 18l6-6-6-6",
  back: "M15 18l-6-6 6-6",
  refresh: "M23 4v6h-6M20.49 15a9 9 0 11-2.12-9.36L23 10",
  key: "M21 2l-2 2m-7.61 7.61a5.5 5.5 0 11-7.78 7.78 5.5 5.5 0 017.78-7.78zM15.5 7.5l3 3L22 7l-3-3",
  clock: "M12 22a10 10 0 100-20 10 10 0 000 20zM12 6v6l4 2",
  alert: "M12 9v4M12 17h.01M10.29 3.86L1.82 18a2 2 0 001.71 3h16.94a2 2 0 001.71-3L13.71 3.86a2 2 0 00-3.42 0z",
  check: "M20 6L9 17l-5-5",
  x: "M18 6L6 18M6 6l12 12",
};

export function icon(name, size = 16) {
  return s(
    "svg",
    {
      class: "icon",
      width: size,
      height: size,
      viewBox: "0 0 24 24",
      fill: "none",
      stroke: "currentColor",
      "stroke-width": 2,
      "stroke-linecap": "round",
      "stroke-linejoin": "round",
      "aria-hidden": "true",
    },
    s("path", { d: ICONS[name] || ICONS.list }),
  );
}

// -- times and durations ---------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

/** "2026-03-02 10:04:05" in the browser's time zone. */
export function absoluteTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** "12 s ago", "in 5 min", "just now". */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const size = Math.abs(seconds);
  if (size < 5) return "just now";
  const units = [
    [60, 1, "s"],
    [3600, 60, "min"],
    [86400, 3600, "h"],
    [86400 * 30, 86400, "d"],
    [86400 * 365, 86400 * 30, "mo"],
    [Infinity, 86400 * 365, "y"],
  ];
  const [, divisor, unit] = units.find(([limit]) => size < limit);
  const amount = Math.floor(size / divisor);
  return seconds < 0 ? `${amount} ${unit} ago` : `in ${amount} ${unit}`;
}

/** A <time> showing the relative time (kept fresh), the absolute one on hover. */
export function timeEl(iso, { absolute = false } = {}) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const utc = new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const node = h(
    "time",
    { datetime: iso, title: `${absoluteTime(iso)} (${utc})`, dataset: { rel: "" } },
    relativeTime(iso),
  );
  if (!absolute) return node;
  return h("span", { class: "when" }, node, h("span", { class: "abs" }, absoluteTime(iso)));
}

setInterval(() => {
  for (const node of document.querySelectorAll("time[data-rel]")) {
    node.textContent = relativeTime(node.getAttribute("datetime"));
  }
}, 5000);

/** 850 ms, 1.2 s, 3 min 5 s, 2 h 3 min, 4 d 2 h. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function between(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso).getTime() : Date.now();
  return Math.max(end - new Date(startIso).getTime(), 0);
}

// -- small pieces ----------------------------------------------------------------------------

export const STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"];

export function badge(status) {
  return h("span", { class: `badge status-${status}` }, h("span", { class: "dot" }), status);
}

export function shortId(id) {
  return id && id.length > 13 ? id.slice(0, 8) : id;
}

export function execLink(id, { full = false } = {}) {
  return h(
    "a",
    { href: `#/executions/${encodeURIComponent(id)}`, class: "mono", title: id },
    full ? id : shortId(id),
  );
}

export function copyButton(text, label = "Copy") {
  const button = h(
    "button",
    { class: "icon-button", type: "button", title: label, "aria-label": label },
    icon("copy", 14),
  );
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(text);
      notify("Copied to the clipboard");
    } catch {
      notify("The browser refused the clipboard", "error");
    }
  });
  return button;
}

export function empty(title, hint) {
  return h("div", { class: "empty" }, h("div", { class: "empty-title" }, title), hint ? h("p", {}, hint) : null);
}

export function loading() {
  return h("div", { class: "loading" }, h("span", { class: "spinner" }), "Loading…");
}

export function card(title, body, { actions = null, className = "" } = {}) {
  return h(
    "section",
    { class: `card ${className}` },
    title ? h("header", { class: "card-head" }, h("h2", {}, title), actions) : null,
    body,
  );
}

/** A definition grid: [["Label", value], ...]; rows with a null value are left out. */
export function facts(rows, { strip = false } = {}) {
  return h(
    "dl",
    { class: strip ? "facts strip" : "facts" },
    rows
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([label, value]) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, value))),
  );
}

// -- JSON --------------------------------------------------------------------------------------

const JSON_LIMIT = 20000;

/** A read-only, highlighted JSON view (long ones cut, with a button to see all). */
export function jsonView(value, { className = "" } = {}) {
  const pre = h("pre", { class: `json ${className}` });
  const text = JSON.stringify(value, null, 2) ?? "undefined";
  const render = (shown) => {
    clear(pre);
    highlight(pre, shown);
    if (shown.length < text.length) {
      pre.append(
        h(
          "button",
          { class: "link-button", type: "button", onclick: () => render(text) },
          `\n… ${(text.length - shown.length).toLocaleString()} more characters: show all`,
        ),
      );
    }
  };
  render(text.length > JSON_LIMIT ? text.slice(0, JSON_LIMIT) : text);
  return pre;
}

const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

function highlight(pre, text) {
  let last = 0;
  for (const match of text.matchAll(TOKEN)) {
    if (match.index > last) pre.append(text.slice(last, match.index));
    const [whole, string, colon, literal, number] = match;
    if (string) {
      pre.append(h("span", { class: colon ? "j-key" : "j-str" }, string));
      if (colon) pre.append(colon);
    } else if (literal) {
      pre.append(h("span", { class: "j-lit" }, literal));
    } else if (number) {
      pre.append(h("span", { class: "j-num" }, number));
    }
    last = match.index + whole.length;
  }
  if (last < text.length) pre.append(text.slice(last));
}

/** Parse JSON text; {ok, value} or {ok: false, message} naming the line and column. */
export function parseJson(text) {
  if (!text.trim()) return { ok: false, message: "empty: write a JSON value, e.g. {}" };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    const position = /position (\d+)/.exec(error.message);
    let where = "";
    if (position) {
      const before = text.slice(0, Number(position[1]));
      const line = before.split("\n").length;
      const column = before.length - before.lastIndexOf("\n");
      where = ` (line ${line}, column ${column})`;
    }
    return { ok: false, message: `not valid JSON${where}: ${error.message.replace(/ in JSON.*$/, "")}` };
  }
}

/**
 * A JSON editor: a textarea checked as you type. `check(value)` may return a problem (text).
 * Returns {node, value(), valid(), onChange(fn)}.
 */
export function jsonEditor(initial, { check = null, rows = 8, label = "JSON" } = {}) {
  const area = h("textarea", {
    class: "json-input mono",
    rows,
    spellcheck: "false",
    autocomplete: "off",
    "aria-label": label,
  });
  area.value = typeof initial === "string" ? initial : JSON.stringify(initial, null, 2);
  const status = h("div", { class: "json-status" });
  const listeners = [];
  let state = { ok: false };
  const validate = () => {
    state = parseJson(area.value);
    if (state.ok && check) {
      const problem = check(state.value);
      if (problem) state = { ok: false, message: problem };
    }
    status.className = `json-status ${state.ok ? "ok" : "bad"}`;
    clear(status).append(
      icon(state.ok ? "check" : "alert", 14),
      state.ok ? "valid JSON" : state.message,
    );
    area.setAttribute("aria-invalid", state.ok ? "false" : "true");
    for (const listener of listeners) listener(state);
  };
  area.addEventListener("input", validate);
  area.addEventListener("keydown", (event) => {
    if (event.key === "Tab") {
      event.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      validate();
    }
  });
  queueMicrotask(validate);
  return {
    node: h("div", { class: "json-editor" }, area, status),
    area,
    value: () => state.value,
    valid: () => state.ok,
    onChange: (listener) => listeners.push(listener),
    validate,
  };
}

/** RFC 7386 JSON merge patch (what POST /executions/{id}/replay applies). */
export function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const merged = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = mergePatch(merged[key], value);
  }
  return merged;
}

// -- notices and dialogs ---------------------------------------------------------------------

/** A notice at the bottom right that goes away by itself. */
export function notify(message, kind = "info") {
  let tray = document.querySelector(".toasts");
  if (!tray) {
    tray = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(tray);
  }
  const toast = h("div", { class: `toast ${kind}` }, icon(kind === "error" ? "alert" : "check", 16), message);
  tray.append(toast);
  setTimeout(() => toast.classList.add("leaving"), 4000);
  setTimeout(() => toast.remove(), 4400);
}

/** An API error, shown plainly: code, message, and each listed problem. */
export function errorBox(error) {
  const issues = error?.details?.issues;
  return h(
    "div",
    { class: "error-box", role: "alert" },
    icon("alert", 18),
    h(
      "div",
      {},
      h("div", { class: "error-title" }, error?.code ? h("code", {}, error.code) : null, " ", error?.message || String(error)),
      Array.isArray(issues) && issues.length
        ? h("ul", {}, issues.map((issue) => h("li", {}, h("code", {}, issue.path || "body"), ": ", issue.message)))
        : null,
    ),
  );
}

/**
 * A modal dialog. `build(close)` returns {body, actions}; resolves with what close() got.
 */
export function dialog(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const node = h("dialog", { class: `dialog ${wide ? "wide" : ""}` });
    const close = (result) => {
      node.close();
      node.remove();
      resolve(result);
    };
    const { body, actions } = build(close);
    node.append(
      h(
        "header",
        { class: "dialog-head" },
        h("h2", {}, title),
        h("button", { class: "icon-button", type: "button", "aria-label": "Close", onclick: () => close(null) }, icon("x", 16)),
      ),
      h("div", { class: "dialog-body" }, body),
      h("footer", { class: "dialog-actions" }, actions),
    );
    node.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(null);
    });
    document.body.append(node);
    node.showModal();
  });
}

export function button(label, { kind = "", iconName = null, onclick = null, disabled = false, title = null } = {}) {
  return h(
    "button",
    { class: `button ${kind}`, type: "button", onclick, disabled, title },
    iconName ? icon(iconName, 15) : null,
    label,
  );
}
