// The dashboard's shell: sign-in, navigation, hash routes, and the page lifecycle (each page
// gets a context whose timers and requests stop when the operator navigates away).

import { api, ApiError, session } from "./api.js";
import { clear, errorBox, h, icon } from "./dom.js";
import { currentRoute } from "./router.js";
import * as executions from "./page-executions.js";
import * as execution from "./page-execution.js";
import * as inbox from "./page-inbox.js";
import * as flows from "./page-flows.js";
import * as triggers from "./page-triggers.js";
import * as fleet from "./page-fleet.js";

// The page is /<prefix>/ui/; opened as /<prefix>/ui, move to the slash so that relative
// links and the <base> the server adds agree.
if (!location.pathname.endsWith("/")) {
  history.replaceState(null, "", `${location.pathname}/${location.search}${location.hash}`);
}

const ROUTES = [
  { pattern: /^executions\/(.+)$/, page: execution, nav: "executions" },
  { pattern: /^executions$/, page: executions, nav: "executions" },
  { pattern: /^inbox$/, page: inbox, nav: "inbox" },
  { pattern: /^flows\/(.+)$/, page: flows, nav: "flows", detail: true },
  { pattern: /^flows$/, page: flows, nav: "flows" },
  { pattern: /^triggers\/(.+)$/, page: triggers, nav: "triggers", detail: true },
  { pattern: /^triggers$/, page: triggers, nav: "triggers" },
  { pattern: /^fleet$/, page: fleet, nav: "fleet" },
];

const NAV = [
  ["executions", "Executions", "list"],
  ["inbox", "Inbox", "inbox"],
  ["flows", "Flows", "flow"],
  ["triggers", "Triggers", "trigger"],
  ["fleet", "Fleet", "fleet"],
];

const root = document.getElementById("app");
let me = null; // {name, tenant_id, admin, auth_required}
let current = null; // the page context of the page on screen

class PageContext {
  constructor() {
    this.controller = new AbortController();
    this.timers = [];
    this.me = me;
  }

  get signal() {
    return this.controller.signal;
  }

  get alive() {
    return !this.controller.signal.aborted;
  }

  /** Run `task` now and every `ms` while this page is on screen and the tab is visible. */
  every(ms, task, { immediate = true } = {}) {
    let running = false;
    const tick = async () => {
      if (!this.alive || document.hidden || running) return;
      running = true;
      try {
        await task();
      } catch (error) {
        if (error.name !== "AbortError") console.warn("refresh failed", error);
      } finally {
        running = false;
      }
    };
    this.timers.push(setInterval(tick, ms));
    return immediate ? tick() : Promise.resolve();
  }

  api(path, options = {}) {
    return api(path, { signal: this.signal, ...options });
  }

  close() {
    this.controller.abort();
    for (const timer of this.timers) clearInterval(timer);
  }
}

function shell() {
  const who = me.auth_required
    ? h(
        "div",
        { class: "who" },
        h("div", { class: "who-name" }, icon("key", 14), me.name),
        h("div", { class: "who-scope" }, me.admin ? "admin: every tenant" : `tenant ${me.tenant_id}`),
        h(
          "button",
          { class: "signout", type: "button", onclick: signOut, title: "Forget the key in this tab" },
          icon("logout", 14),
          "Sign out",
        ),
      )
    : h("div", { class: "who" }, h("div", { class: "who-scope warn" }, "API keys are off (FLOWMONKEY_API_AUTH=false)"));
  return h(
    "div",
    { class: "layout" },
    h(
      "aside",
      { class: "sidebar" },
      h(
        "a",
        { class: "brand", href: "#/executions" },
        h("img", { src: "favicon.svg", alt: "", width: 26, height: 26 }),
        h("span", {}, "FlowMonkey"),
      ),
      h(
        "nav",
        { "aria-label": "Pages" },
        NAV.map(([id, label, iconName]) =>
          h("a", { href: `#/${id}`, class: "nav-link", dataset: { nav: id } }, icon(iconName, 17), h("span", {}, label)),
        ),
      ),
      who,
    ),
    h("main", { id: "main", tabindex: "-1" }),
  );
}

async function render() {
  if (!me) return;
  if (current) current.close();
  const { path, params } = currentRoute();
  const route = ROUTES.find((r) => r.pattern.test(path)) || ROUTES[1];
  const match = route.pattern.exec(path) || [];
  for (const link of document.querySelectorAll(".nav-link")) {
    link.classList.toggle("active", link.dataset.nav === route.nav);
  }
  const main = document.getElementById("main");
  clear(main);
  const label = NAV.find(([nav]) => nav === route.nav)?.[1] || "Executions";
  document.title = `${match[1] ? `${decodeURIComponent(match[1]).slice(0, 12)} · ` : ""}${label} · FlowMonkey`;
  const context = (current = new PageContext());
  const id = match[1] ? decodeURIComponent(match[1]) : null;
  try {
    await route.page.render(main, { id, params, detail: Boolean(route.detail && id) }, context);
  } catch (error) {
    if (error.name === "AbortError" || !context.alive) return;
    clear(main).append(h("div", { class: "page" }, errorBox(error)));
  }
}

// -- signing in --------------------------------------------------------------------------------

function signIn(message = null) {
  if (current) current.close();
  me = null;
  const input = h("input", {
    type: "password",
    name: "api-key",
    class: "input mono",
    placeholder: "fmk_…",
    autocomplete: "off",
    required: true,
    "aria-label": "API key",
  });
  const problem = h("div", { class: "signin-error", role: "alert" }, message ? errorBox(message) : null);
  const form = h(
    "form",
    { class: "signin-card" },
    h("div", { class: "signin-brand" }, h("img", { src: "favicon.svg", alt: "", width: 40, height: 40 }), h("h1", {}, "FlowMonkey")),
    h("p", { class: "muted" }, "Sign in with an API key. It stays in this browser tab only."),
    h("label", { class: "field" }, h("span", {}, "API key"), input),
    problem,
    h("button", { class: "button primary wide", type: "submit" }, "Sign in"),
    h("p", { class: "hint" }, "Create one with ", h("code", {}, "flowmonkey keys create NAME"), " (add ", h("code", {}, "--admin"), " for every tenant)."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.setKey(input.value.trim());
    try {
      await start();
    } catch (error) {
      if (error.status === 401) return; // the form is shown again, with the reason
      session.forget();
      clear(problem).append(errorBox(error));
    }
  });
  clear(root).append(h("div", { class: "signin" }, form));
  root.classList.remove("booting");
  input.focus();
}

function signOut() {
  session.forget();
  signIn();
}

async function start() {
  me = await api("whoami");
  clear(root).append(shell());
  root.classList.remove("booting");
  await render();
}

// Any 401 (a wrong key, a key revoked meanwhile) brings the sign-in form back, saying why.
window.addEventListener("fm:unauthorized", (event) => {
  const hadKey = Boolean(session.key());
  session.forget();
  signIn(hadKey && event.detail instanceof ApiError ? event.detail : null);
});
window.addEventListener("hashchange", render);
window.addEventListener("fm:route", render);

start().catch((error) => {
  if (error.status === 401) return; // the sign-in form is up
  clear(root).append(h("div", { class: "page" }, errorBox(error)));
  root.classList.remove("booting");
});
