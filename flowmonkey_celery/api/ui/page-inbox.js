// The waiting inbox: executions waiting for a person or a signal (signal and event waits), with
// their reason and deadline, each resumable from here with JSON data.

import { resumeDialog } from "./actions.js";
import { button, clear, put, empty, errorBox, execLink, h, timeEl } from "./dom.js";
import { setParams } from "./router.js";

const REFRESH_MS = 4000;
const PAGE_SIZE = 50;
const SOON_MS = 15 * 60 * 1000;

export async function render(main, { params }, ctx) {
  const filters = { flow: params.get("flow") || "", kind: params.get("kind") || "" };
  const list = h("div", { class: "inbox-list" });
  const problem = h("div");
  const counter = h("span", { class: "count-pill" }, "…");
  const flowSelect = h("select", { class: "input", name: "flow", "aria-label": "Flow" }, h("option", { value: "" }, "All flows"));
  const kindSelect = h(
    "select",
    { class: "input", name: "kind", "aria-label": "Waiting for" },
    [
      ["", "Signals and events"],
      ["signal", "Signals"],
      ["event", "Events"],
    ].map(([value, label]) => h("option", { value, selected: value === filters.kind }, label)),
  );
  flowSelect.addEventListener("change", () => setParams({ ...filters, flow: flowSelect.value }));
  kindSelect.addEventListener("change", () => setParams({ ...filters, kind: kindSelect.value }));
  main.append(
    h(
      "div",
      { class: "page" },
      h(
        "header",
        { class: "page-head" },
        h("div", {}, h("h1", {}, "Inbox ", counter), h("p", { class: "subtitle" }, "Executions waiting for a person or a signal, oldest first.")),
      ),
      h("div", { class: "filters" }, flowSelect, kindSelect),
      problem,
      list,
    ),
  );
  ctx.api("flows").then(
    (answer) => answer.items.forEach((f) => flowSelect.append(h("option", { value: f.id, selected: f.id === filters.flow }, f.id))),
    () => {},
  );

  // The first page refreshes live; "load more" appends the pages after it.
  let more = [];
  let nextAfter = null;
  let shown = "";
  const draw = (items) => {
    const all = [...items, ...more.filter((m) => !items.some((i) => i.id === m.id))];
    const signature = JSON.stringify([all.map((i) => [i.id, i.version]), nextAfter]);
    if (signature === shown) return;
    shown = signature;
    counter.textContent = nextAfter ? `${all.length}+` : String(all.length);
    clear(list);
    if (!all.length) {
      list.append(empty("Nothing is waiting for anyone", "Executions at a wait_for_signal, webhook or wait_for_event step show up here."));
      return;
    }
    put(list, all.map((item) => inboxCard(item, ctx, refresh)));
    if (nextAfter) {
      list.append(
        h(
          "div",
          { class: "pager" },
          button("Load more", {
            onclick: async () => {
              const page = await ctx.api("inbox", { query: { flow_id: filters.flow, kind: filters.kind, limit: PAGE_SIZE, after: nextAfter } });
              more = [...more, ...page.items];
              nextAfter = page.next_after;
              draw(firstPage);
            },
          }),
        ),
      );
    }
  };
  let firstPage = [];
  const refresh = async () => {
    try {
      const page = await ctx.api("inbox", { query: { flow_id: filters.flow, kind: filters.kind, limit: PAGE_SIZE } });
      firstPage = page.items;
      if (!more.length) nextAfter = page.next_after;
      clear(problem);
      draw(firstPage);
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(problem).append(errorBox(error));
    }
  };
  await ctx.every(REFRESH_MS, refresh);
}

function inboxCard(item, ctx, refresh) {
  const waiting = item.waiting_for || {};
  const deadline = waiting.deadline_at;
  const left = deadline ? new Date(deadline).getTime() - Date.now() : null;
  const urgency = left === null ? "" : left < 0 ? "overdue" : left < SOON_MS ? "soon" : "";
  return h(
    "article",
    { class: `inbox-card ${urgency}`, dataset: { id: item.id } },
    h(
      "div",
      { class: "inbox-main" },
      h(
        "div",
        { class: "inbox-top" },
        h("span", { class: `kind kind-${waiting.kind}` }, waiting.kind === "event" ? "event" : "signal"),
        h("strong", { class: "flow-name" }, item.flow_id),
        h("span", { class: "muted" }, " at "),
        h("code", {}, waiting.step_name || item.current_step_id),
        waiting.step_type ? h("span", { class: "tl-type" }, waiting.step_type) : null,
      ),
      h("div", { class: "inbox-reason" }, waiting.reason || item.wait_reason || "waiting for a signal"),
      h(
        "div",
        { class: "inbox-meta" },
        h("span", {}, "Waiting since ", waiting.since ? timeEl(waiting.since) : "—"),
        deadline
          ? h("span", { class: `deadline ${urgency}` }, urgency === "overdue" ? "Deadline passed " : `${waiting.deadline === "execution timeout" ? "Execution deadline" : "Deadline"} `, timeEl(deadline))
          : h("span", { class: "muted" }, "No deadline"),
        item.tenant_id && ctx.me.admin ? h("span", {}, "Tenant ", item.tenant_id) : null,
        h("span", {}, execLink(item.id)),
      ),
    ),
    h(
      "div",
      { class: "inbox-actions" },
      button("Resume…", {
        kind: "primary",
        iconName: "play",
        onclick: async () => {
          if (await resumeDialog(item, waiting)) await refresh();
        },
      }),
      h("a", { class: "button ghost", href: `#/executions/${encodeURIComponent(item.id)}` }, "Open"),
    ),
  );
}
