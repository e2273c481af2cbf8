// Executions: live counts per status, filters (status, flow, tenant, created range, search by
// id, idempotency key or metadata key:value), newest first, keyset paging by cursor.

import { setParams } from "./router.js";
import { badge, between, clear, put, duration, empty, errorBox, execLink, h, icon, STATUSES, timeEl } from "./dom.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 3000;
// The cursors of the pages before this one, per filter set (for "newer"): keyset paging only
// knows how to go on.
const cursorTrail = new Map();

function toIso(local) {
  if (!local) return null;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** What the search box asks for: an id (also tried as an idempotency key) or metadata. */
export function readSearch(text) {
  const q = (text || "").trim();
  if (!q) return {};
  const colon = q.indexOf(":");
  if (colon > 0 && !/\s/.test(q.slice(0, colon))) return { metadata: q };
  return { idOrKey: q };
}

export async function render(main, { params }, ctx) {
  const filters = {
    status: params.get("status") || "",
    flow: params.get("flow") || "",
    tenant: params.get("tenant") || "",
    from: params.get("from") || "",
    to: params.get("to") || "",
    q: params.get("q") || "",
    after: params.get("after") || "",
  };
  const signature = JSON.stringify({ ...filters, after: undefined });
  const trail = cursorTrail.get(signature) || [];
  cursorTrail.set(signature, trail);
  const change = (patch) => setParams({ ...filters, after: "", ...patch });

  const search = readSearch(filters.q);
  const scope = {
    flow_id: filters.flow,
    tenant_id: filters.tenant,
    created_after: toIso(filters.from),
    created_before: toIso(filters.to),
    metadata: search.metadata,
  };

  const live = h("span", { class: "live" }, h("span", { class: "live-dot" }), "live");
  const countsRow = h("div", { class: "status-cards", role: "group", "aria-label": "Counts per status" });
  const tableHolder = h("div", { class: "table-holder" });
  const problem = h("div");

  // -- filters -------------------------------------------------------------------------------
  const searchInput = h("input", {
    class: "input search",
    type: "search",
    name: "q",
    placeholder: "Execution id, idempotency key, or metadata key:value",
    value: filters.q,
    "aria-label": "Search",
  });
  const flowSelect = h("select", { class: "input", name: "flow", "aria-label": "Flow" }, h("option", { value: "" }, "All flows"));
  const tenantInput = ctx.me.admin
    ? h("input", { class: "input narrow", name: "tenant", placeholder: "Tenant", value: filters.tenant, "aria-label": "Tenant" })
    : null;
  const fromInput = h("input", { class: "input", type: "datetime-local", name: "from", value: filters.from, "aria-label": "Created from" });
  const toInput = h("input", { class: "input", type: "datetime-local", name: "to", value: filters.to, "aria-label": "Created before" });
  const form = h(
    "form",
    { class: "filters", role: "search" },
    h("label", { class: "search-box" }, icon("search", 15), searchInput),
    flowSelect,
    tenantInput,
    h("label", { class: "range" }, h("span", {}, "Created"), fromInput, h("span", {}, "to"), toInput),
    Object.values({ ...filters, after: "" }).some(Boolean)
      ? h("button", { class: "button ghost", type: "button", onclick: () => setParams({}) }, "Clear")
      : null,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    change({ q: searchInput.value.trim() });
  });
  searchInput.addEventListener("search", () => change({ q: searchInput.value.trim() }));
  flowSelect.addEventListener("change", () => change({ flow: flowSelect.value }));
  tenantInput?.addEventListener("change", () => change({ tenant: tenantInput.value.trim() }));
  fromInput.addEventListener("change", () => change({ from: fromInput.value }));
  toInput.addEventListener("change", () => change({ to: toInput.value }));

  main.append(
    h(
      "div",
      { class: "page" },
      h("header", { class: "page-head" }, h("div", {}, h("h1", {}, "Executions"), h("p", { class: "subtitle" }, "Newest first. ", live))),
      countsRow,
      form,
      problem,
      tableHolder,
    ),
  );

  ctx.api("flows").then(
    (answer) => {
      for (const flow of answer.items) {
        flowSelect.append(h("option", { value: flow.id, selected: flow.id === filters.flow }, flow.name && flow.name !== flow.id ? `${flow.id} (${flow.name})` : flow.id));
      }
      if (filters.flow && !answer.items.some((f) => f.id === filters.flow)) {
        flowSelect.append(h("option", { value: filters.flow, selected: true }, filters.flow));
      }
    },
    () => {},
  );

  // -- counts ----------------------------------------------------------------------------------
  const refreshCounts = async () => {
    const query = { ...scope, idempotency_key: search.idOrKey };
    const { counts } = await ctx.api("executions/counts", { query });
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    put(
      countsRow,
      statusCard("all", "All", total, !filters.status, () => change({ status: "" })),
      STATUSES.map((status) =>
        statusCard(status, status, counts[status] ?? 0, filters.status === status, () => change({ status: filters.status === status ? "" : status })),
      ),
    );
  };

  // -- rows ------------------------------------------------------------------------------------
  let lastShown = "";
  const refreshRows = async () => {
    const listed = ctx.api("executions", {
      query: {
        ...scope,
        status: filters.status,
        idempotency_key: search.idOrKey,
        order: "newest",
        limit: PAGE_SIZE,
        after: filters.after,
      },
    });
    // On the first page, exact matches first: the execution with that id, or (for a term with
    // a colon, read as metadata) executions with that idempotency key (webhook:<trigger>:<key>).
    const exactMatches = async () => {
      if (filters.after) return [];
      if (search.idOrKey) {
        try {
          return [await ctx.api(`executions/${encodeURIComponent(search.idOrKey)}`)];
        } catch (error) {
          if (error.status === 404) return [];
          throw error;
        }
      }
      if (search.metadata) {
        const keyed = await ctx.api("executions", { query: { ...scope, metadata: undefined, status: filters.status, idempotency_key: filters.q.trim(), limit: 10 } });
        return keyed.items;
      }
      return [];
    };
    const [page, exact] = await Promise.all([listed, exactMatches()]);
    const known = new Set(exact.map((e) => e.id));
    const items = [...exact, ...page.items.filter((e) => !known.has(e.id))];
    const shown = JSON.stringify([items.map((e) => [e.id, e.version]), page.next_after]);
    clear(problem);
    if (shown === lastShown) {
      for (const node of tableHolder.querySelectorAll("[data-live-duration]")) {
        node.textContent = duration(between(node.dataset.liveDuration, null));
      }
      return;
    }
    lastShown = shown;
    clear(tableHolder).append(table(items, ctx.me.admin), pager(page.next_after));
  };

  const pager = (nextAfter) =>
    h(
      "div",
      { class: "pager" },
      h(
        "button",
        {
          class: "button",
          type: "button",
          disabled: !filters.after,
          onclick: () => setParams({ ...filters, after: trail.pop() || "" }),
        },
        icon("back", 14),
        "Newer",
      ),
      h("span", { class: "muted" }, filters.after ? `Page ${trail.length + 2}` : "First page"),
      h(
        "button",
        {
          class: "button",
          type: "button",
          disabled: !nextAfter,
          onclick: () => {
            trail.push(filters.after);
            setParams({ ...filters, after: nextAfter });
          },
        },
        "Older",
        icon("chevron", 14),
      ),
    );

  const refresh = async () => {
    try {
      await Promise.all([refreshCounts(), refreshRows()]);
      live.classList.remove("stale");
      live.title = `updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (error.name === "AbortError") return;
      live.classList.add("stale");
      clear(problem).append(errorBox(error));
      if (!lastShown) clear(tableHolder);
    }
  };
  await ctx.every(REFRESH_MS, refresh);
}

function statusCard(status, label, count, selected, onclick) {
  return h(
    "button",
    {
      type: "button",
      class: `status-card status-${status} ${selected ? "selected" : ""}`,
      "aria-pressed": selected ? "true" : "false",
      dataset: { status },
      onclick,
    },
    h("span", { class: "status-card-label" }, h("span", { class: "dot" }), label),
    h("span", { class: "status-card-count" }, count.toLocaleString()),
  );
}

function table(items, showTenant) {
  if (!items.length) {
    return empty("No executions match", "Start one with POST /executions, `flowmonkey run FLOW`, a trigger or an event; or clear the filters.");
  }
  return h(
    "table",
    { class: "table executions-table" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, "Status"), h("th", {}, "Execution"), h("th", {}, "Flow"), h("th", {}, "Step"), h("th", {}, "Created"), h("th", { class: "num" }, "Duration"), showTenant ? h("th", {}, "Tenant") : null),
    ),
    h("tbody", {}, items.map((e) => row(e, showTenant))),
  );
}

function row(e, showTenant) {
  const href = `#/executions/${encodeURIComponent(e.id)}`;
  const live = !["completed", "failed", "cancelled"].includes(e.status);
  const started = e.started_at || e.created_at;
  const detail =
    e.status === "failed" && e.error
      ? h("span", { class: "row-note bad", title: e.error.message }, e.error.code)
      : e.status === "waiting" && e.wait_reason
        ? h("span", { class: "row-note", title: e.wait_reason }, e.wait_reason)
        : null;
  const tr = h(
    "tr",
    { class: "clickable", dataset: { id: e.id, status: e.status } },
    h("td", {}, badge(e.status)),
    h(
      "td",
      {},
      execLink(e.id),
      e.metadata?.replay_of ? h("span", { class: "tag", title: `replay of ${e.metadata.replay_of}` }, "replay") : null,
      e.parent_execution_id ? h("span", { class: "tag", title: `child of ${e.parent_execution_id}` }, "child") : null,
      e.idempotency_key ? h("div", { class: "row-note mono", title: "idempotency key" }, e.idempotency_key) : null,
    ),
    h("td", {}, h("span", { class: "flow-name" }, e.flow_id), h("span", { class: "version" }, e.flow_version)),
    h("td", {}, e.current_step_id ? h("span", { class: "mono" }, e.current_step_id) : h("span", { class: "muted" }, "—"), detail),
    h("td", {}, timeEl(e.created_at)),
    h("td", { class: "num", dataset: live ? { liveDuration: started } : {} }, duration(between(started, live ? null : e.finished_at || e.updated_at))),
    showTenant ? h("td", {}, e.tenant_id || h("span", { class: "muted" }, "—")) : null,
  );
  tr.addEventListener("click", (event) => {
    if (event.target.closest("a, button")) return;
    location.hash = href;
  });
  return tr;
}
