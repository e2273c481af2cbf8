// Triggers: the list (enable or disable in place), and a trigger's page with its stats and
// fire history.

import { api } from "./api.js";
import { button, card, clear, put, duration, empty, errorBox, execLink, facts, h, jsonView, loading, notify, timeEl } from "./dom.js";

const REFRESH_MS = 5000;

function what(trigger) {
  if (trigger.type === "schedule") return h("span", {}, h("code", {}, trigger.schedule), " ", h("span", { class: "muted" }, trigger.timezone || "UTC"));
  if (trigger.type === "http") return h("span", {}, h("code", {}, `POST ${trigger.url || `/webhooks/${trigger.id}`}`), " ", h("span", { class: "muted" }, `auth ${trigger.auth?.type || "none"}`));
  if (trigger.type === "event") return h("span", {}, "on ", h("code", {}, trigger.event_type), trigger.conditions ? h("span", { class: "muted" }, " with conditions") : null);
  return "—";
}

async function setEnabled(trigger, enabled) {
  const changed = await api(`triggers/${encodeURIComponent(trigger.id)}`, { method: "PATCH", body: { enabled } });
  notify(`Trigger ${trigger.id} ${enabled ? "enabled" : "disabled"}`);
  return changed;
}

function toggle(trigger, onChange) {
  const input = h("input", { type: "checkbox", checked: trigger.enabled, "aria-label": `${trigger.enabled ? "Disable" : "Enable"} ${trigger.id}` });
  input.addEventListener("change", async () => {
    input.disabled = true;
    try {
      onChange(await setEnabled(trigger, input.checked));
    } catch (error) {
      input.checked = !input.checked;
      notify(`${error.code}: ${error.message}`, "error");
    } finally {
      input.disabled = false;
    }
  });
  return h("label", { class: "switch", title: trigger.enabled ? "enabled" : "disabled" }, input, h("span", { class: "slider" }));
}

export async function render(main, { id }, ctx) {
  if (id) return triggerPage(main, id, ctx);
  const page = h("div", { class: "page" }, h("header", { class: "page-head" }, h("div", {}, h("h1", {}, "Triggers"), h("p", { class: "subtitle" }, "Cron schedules, webhooks and event triggers that start flows."))), loading());
  main.append(page);
  const { items } = await ctx.api("triggers");
  page.lastChild.remove();
  if (!items.length) {
    page.append(empty("No triggers", "Create one with POST /triggers, `flowmonkey triggers`, or a flow file's triggers: list."));
    return;
  }
  page.append(
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "On"), h("th", {}, "Trigger"), h("th", {}, "Type"), h("th", {}, "Starts"), h("th", {}, "When"), ctx.me.admin ? h("th", {}, "Tenant") : null)),
      h(
        "tbody",
        {},
        items.map((trigger) =>
          h(
            "tr",
            { dataset: { id: trigger.id } },
            h("td", {}, toggle(trigger, () => {})),
            h("td", {}, h("a", { href: `#/triggers/${encodeURIComponent(trigger.id)}`, class: "strong" }, trigger.id), trigger.name ? h("div", { class: "muted small" }, trigger.name) : null),
            h("td", {}, h("span", { class: `kind kind-${trigger.type}` }, trigger.type)),
            h("td", {}, h("a", { href: `#/flows/${encodeURIComponent(trigger.flow_id)}` }, trigger.flow_id)),
            h("td", {}, what(trigger)),
            ctx.me.admin ? h("td", {}, trigger.tenant_id || h("span", { class: "muted" }, "—")) : null,
          ),
        ),
      ),
    ),
  );
}

async function triggerPage(main, id, ctx) {
  const page = h("div", { class: "page" }, loading());
  main.append(page);
  const path = `triggers/${encodeURIComponent(id)}`;
  let trigger = await ctx.api(path);
  const head = h("div");
  const definition = h("div");
  const statsHolder = h("div");
  const historyHolder = h("div");
  const problem = h("div");

  const drawHead = () => {
    const flip = button(trigger.enabled ? "Disable" : "Enable", {
      kind: trigger.enabled ? "danger-ghost" : "primary",
      onclick: async () => {
        flip.disabled = true;
        try {
          trigger = await setEnabled(trigger, !trigger.enabled);
          drawHead();
        } catch (error) {
          clear(problem).append(errorBox(error));
          flip.disabled = false;
        }
      },
    });
    clear(head).append(
      h(
        "header",
        { class: "page-head" },
        h(
          "div",
          {},
          h("nav", { class: "crumbs" }, h("a", { href: "#/triggers" }, "Triggers"), " / ", id),
          h("h1", { class: "title-row" }, h("span", { class: `kind kind-${trigger.type}` }, trigger.type), trigger.name || trigger.id, h("span", { class: `state ${trigger.enabled ? "on" : "off"}` }, trigger.enabled ? "enabled" : "disabled")),
          h("p", { class: "subtitle" }, "Starts ", h("a", { href: `#/flows/${encodeURIComponent(trigger.flow_id)}` }, trigger.flow_id), " · ", what(trigger)),
        ),
        h("div", { class: "actions" }, h("a", { class: "button ghost", href: `#/executions?q=${encodeURIComponent(`trigger_id:${trigger.id}`)}` }, "Executions"), flip),
      ),
      problem,
    );
    put(
      definition,
      card(
        "Definition",
        h(
          "div",
          { class: "two-columns" },
          facts([
            ["Flow", trigger.flow_id],
            ["Tenant", trigger.tenant_id],
            ["Created", timeEl(trigger.created_at, { absolute: true })],
            ["Updated", timeEl(trigger.updated_at, { absolute: true })],
          ]),
          jsonView(trigger, { className: "compact" }),
        ),
      ),
    );
  };

  const refresh = async () => {
    const [stats, fires] = await Promise.all([ctx.api(`${path}/stats`), ctx.api(`${path}/history`, { query: { limit: 100 } })]);
    clear(statsHolder).append(
      h(
        "div",
        { class: "stat-cards" },
        stat("Fires", stats.fires),
        stat("Accepted", stats.accepted, "good"),
        stat("Duplicates", stats.duplicate),
        stat("Rejected", stats.rejected, stats.rejected ? "bad" : ""),
        stat("Failed", stats.failed, stats.failed ? "bad" : ""),
        stat("Mean latency", stats.mean_latency_ms === null || stats.mean_latency_ms === undefined ? "—" : duration(stats.mean_latency_ms)),
        stat("Last fire", stats.last_fired_at ? timeEl(stats.last_fired_at) : "never"),
      ),
    );
    clear(historyHolder).append(
      card(
        "Fire history",
        fires.items.length
          ? h(
              "table",
              { class: "table" },
              h("thead", {}, h("tr", {}, h("th", {}, "At"), h("th", {}, "Status"), h("th", {}, "Execution"), h("th", { class: "num" }, "Latency"), h("th", {}, "Error"))),
              h(
                "tbody",
                {},
                fires.items.map((fire) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, timeEl(fire.at, { absolute: true })),
                    h("td", {}, h("span", { class: `fire fire-${fire.status}` }, fire.status)),
                    h("td", {}, fire.execution_id ? execLink(fire.execution_id) : "—"),
                    h("td", { class: "num" }, fire.latency_ms === null || fire.latency_ms === undefined ? "—" : duration(fire.latency_ms)),
                    h("td", { class: "small" }, fire.error ? `${fire.error.code || ""} ${fire.error.message || JSON.stringify(fire.error)}` : ""),
                  ),
                ),
              ),
            )
          : empty("Never fired", "Fires of this trigger show up here."),
      ),
    );
  };
  drawHead();
  clear(page).append(head, statsHolder, historyHolder, definition);
  await ctx.every(REFRESH_MS, async () => {
    try {
      await refresh();
    } catch (error) {
      if (error.name !== "AbortError") clear(historyHolder).append(errorBox(error));
    }
  });
}

function stat(label, value, tone = "") {
  return h("div", { class: `stat ${tone}` }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, typeof value === "number" ? value.toLocaleString() : value));
}

