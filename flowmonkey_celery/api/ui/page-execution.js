// One execution: its flow drawn with the path taken, a step timeline (attempts, durations,
// waits, errors, retries) with the context before and the output of each step, its context,
// children, parent and replays, and the actions resume, cancel and replay from a step.

import { cancelDialog, replayDialog, resumeDialog } from "./actions.js";
import {
  absoluteTime,
  badge,
  between,
  button,
  card,
  clear,
  copyButton,
  duration,
  empty,
  errorBox,
  execLink,
  facts,
  h,
  jsonView,
  loading,
  put,
  shortId,
  timeEl,
} from "./dom.js";
import { flowGraph, pathOf } from "./graph.js";
import { go } from "./router.js";

const REFRESH_MS = 2000;
const TERMINAL = ["completed", "failed", "cancelled"];
const TABS = [
  ["timeline", "Timeline"],
  ["context", "Context & output"],
  ["children", "Children"],
  ["events", "Events"],
];

export async function render(main, { id }, ctx) {
  const page = h("div", { class: "page" }, loading());
  main.append(page);
  const path = `executions/${encodeURIComponent(id)}`;
  const state = { tab: "timeline", open: new Set(), selected: null, flows: new Map() };

  const load = async () => {
    const [execution, history, children, replays] = await Promise.all([
      ctx.api(path),
      ctx.api(`${path}/history`),
      ctx.api(`${path}/children`, { query: { limit: 100 } }),
      ctx.api("executions", { query: { metadata: `replay_of:${id}`, order: "newest", limit: 20 } }).catch(() => ({ items: [] })),
    ]);
    const key = `${execution.flow_id}@${execution.flow_version}`;
    if (!state.flows.has(key)) {
      state.flows.set(
        key,
        await ctx.api(`flows/${encodeURIComponent(execution.flow_id)}`, { query: { version: execution.flow_version } }).catch((error) => ({ error })),
      );
    }
    return { execution, history: history.items, children: children.items, replays: replays.items, flow: state.flows.get(key) };
  };

  let shown = "";
  const draw = (data) => {
    const signature = JSON.stringify([data.execution.version, data.execution.status, data.history.length, data.children.map((c) => [c.id, c.status]), data.replays.map((r) => r.id)]);
    if (signature === shown) return;
    shown = signature;
    const scrollX = page.querySelector(".graph-scroll")?.scrollLeft;
    put(page, view(data, state, ctx, redraw));
    if (scrollX) page.querySelector(".graph-scroll").scrollLeft = scrollX;
  };
  let latest = null;
  const redraw = () => {
    shown = "";
    if (latest) draw(latest);
  };
  const refresh = async () => {
    latest = await load();
    draw(latest);
    return latest;
  };
  state.refresh = refresh;
  state.forceRefresh = async () => {
    shown = "";
    await refresh();
  };

  // Live until it is finished (an action on it refreshes it at once anyway).
  let finished = TERMINAL.includes((await refresh()).execution.status);
  ctx.every(
    REFRESH_MS,
    async () => {
      if (!finished) finished = TERMINAL.includes((await refresh()).execution.status);
    },
    { immediate: false },
  );
}

function view(data, state, ctx, redraw) {
  const { execution: e, history, flow } = data;
  return [
    header(data, state),
    alerts(e),
    summary(data),
    h("div", { class: "detail-grid" }, graphCard(data, state, redraw), tabs(data, state, redraw)),
  ];
}

function header({ execution: e, history, flow }, state) {
  const actions = [];
  if (e.status === "waiting") {
    actions.push(
      button("Resume…", {
        kind: "primary",
        iconName: "play",
        onclick: async () => {
          const step = flow?.steps?.[e.current_step_id];
          if (await resumeDialog(e, { output_key: step?.outputKey ?? step?.output_key, step_name: step?.name || e.current_step_id })) await state.forceRefresh();
        },
      }),
    );
  }
  if (!TERMINAL.includes(e.status)) {
    actions.push(
      button("Cancel…", {
        kind: "danger-ghost",
        iconName: "stop",
        onclick: async () => {
          if (await cancelDialog(e)) await state.forceRefresh();
        },
      }),
    );
  }
  actions.push(
    button("Replay from a step…", {
      kind: TERMINAL.includes(e.status) ? "primary" : "",
      iconName: "replay",
      onclick: async () => {
        const started = await replayDialog(e, history, flow?.error ? null : flow, { fromStep: state.selected });
        if (started) go(`#/executions/${encodeURIComponent(started.id)}`);
      },
    }),
  );
  return h(
    "header",
    { class: "page-head detail-head" },
    h(
      "div",
      {},
      h("nav", { class: "crumbs" }, h("a", { href: "#/executions" }, "Executions"), " / ", h("span", { class: "mono" }, shortId(e.id))),
      h(
        "h1",
        { class: "title-row" },
        badge(e.status),
        h("a", { href: `#/flows/${encodeURIComponent(e.flow_id)}?version=${encodeURIComponent(e.flow_version)}`, class: "flow-title" }, e.flow_id),
        h("span", { class: "version" }, e.flow_version),
      ),
      h("p", { class: "subtitle mono" }, e.id, copyButton(e.id, "Copy the execution id")),
    ),
    h("div", { class: "actions" }, actions),
  );
}

function alerts(e) {
  const boxes = [];
  if (e.error) {
    boxes.push(
      h(
        "div",
        { class: `alert ${e.status === "cancelled" ? "muted-alert" : "bad"}` },
        h("div", { class: "alert-title" }, h("code", {}, e.error.code), e.error.step_id ? [" at step ", h("code", {}, e.error.step_id)] : null),
        h("div", {}, e.error.message),
        e.error.details && Object.keys(e.error.details).length ? jsonView(e.error.details, { className: "compact" }) : null,
      ),
    );
  }
  if (e.cancellation) {
    boxes.push(
      h(
        "div",
        { class: "alert muted-alert" },
        h("div", { class: "alert-title" }, `Cancelled by ${e.cancellation.source} `, timeEl(e.cancellation.cancelled_at)),
        e.cancellation.reason ? h("div", {}, e.cancellation.reason) : null,
      ),
    );
  }
  if (e.status === "waiting") {
    const deadline = [e.wake_at && e.wait_kind !== "timer" && e.wait_kind !== "retry" ? e.wake_at : null, e.wait_deadline_at].filter(Boolean).sort()[0];
    boxes.push(
      h(
        "div",
        { class: "alert waiting" },
        h("div", { class: "alert-title" }, `Waiting (${e.wait_kind || "?"}) at `, h("code", {}, e.current_step_id), " since ", timeEl(e.wait_started_at)),
        e.wait_reason ? h("div", {}, e.wait_reason) : null,
        e.wait_kind === "timer" || e.wait_kind === "retry"
          ? h("div", { class: "muted" }, "Wakes ", timeEl(e.wake_at, { absolute: true }))
          : deadline
            ? h("div", { class: "muted" }, "Deadline ", timeEl(deadline, { absolute: true }))
            : null,
      ),
    );
  }
  return boxes.length ? h("div", { class: "alerts" }, boxes) : null;
}

function summary({ execution: e, replays }) {
  const live = !TERMINAL.includes(e.status);
  const started = e.started_at || e.created_at;
  const rows = [
    ["Created", timeEl(e.created_at, { absolute: true })],
    [live ? "Updated" : "Finished", timeEl(live ? e.updated_at : e.finished_at || e.updated_at, { absolute: true })],
    ["Duration", `${duration(between(started, live ? null : e.finished_at || e.updated_at))}${live ? " so far" : ""}`],
    ["Steps run", String(e.step_count)],
    ["Current step", e.current_step_id ? h("code", {}, e.current_step_id) : null],
    ["Tenant", e.tenant_id],
    ["Idempotency key", e.idempotency_key ? h("code", {}, e.idempotency_key) : null],
    ["Parent", e.parent_execution_id ? execLink(e.parent_execution_id) : null],
    [
      "Replay of",
      e.metadata?.replay_of
        ? h("span", {}, execLink(e.metadata.replay_of), e.metadata.replay_from_step ? [" from ", h("code", {}, e.metadata.replay_from_step)] : null)
        : null,
    ],
    [
      "Replays",
      replays.length
        ? h(
            "span",
            { class: "link-list" },
            replays.map((r) => h("span", { class: "linked" }, execLink(r.id), " ", badge(r.status))),
          )
        : null,
    ],
    ["Retry attempts", e.retry_attempts ? String(e.retry_attempts) : null],
    ["Timeouts", e.timeout ? timeoutText(e.timeout) : null],
    ["Version", String(e.version)],
  ];
  return h("section", { class: "card summary-card" }, facts(rows, { strip: true }));
}

function timeoutText(timeout) {
  const parts = [];
  if (timeout.execution_timeout_ms) parts.push(`execution ${duration(timeout.execution_timeout_ms)}`);
  if (timeout.wait_timeout_ms) parts.push(`each wait ${duration(timeout.wait_timeout_ms)}`);
  return parts.join(", ") || null;
}

function graphCard({ execution: e, history, flow }, state, redraw) {
  if (!flow || flow.error) {
    return card("Flow", flow?.error ? errorBox(flow.error) : empty("No flow definition"), { className: "graph-card" });
  }
  const path = pathOf(e, history);
  const svg = flowGraph(flow, path, (stepId) => {
    state.selected = state.selected === stepId ? null : stepId;
    state.tab = "timeline";
    redraw();
  });
  if (state.selected) svg.querySelector(`[data-step="${CSS.escape(state.selected)}"]`)?.classList.add("selected");
  const legend = h(
    "div",
    { class: "legend" },
    h("span", { class: "legend-item taken" }, "path taken"),
    path.current ? h("span", { class: `legend-item current-${path.currentKind}` }, { failed: "failed here", cancelled: "cancelled here" }[path.currentKind] || "current step") : null,
    h("span", { class: "legend-item unvisited" }, "not run"),
  );
  return card("Flow", h("div", { class: "graph-scroll" }, svg), { actions: legend, className: "graph-card" });
}

// -- tabs ------------------------------------------------------------------------------------

function tabs(data, state, redraw) {
  const counts = { children: data.children.length, events: data.history.length };
  const bar = h(
    "div",
    { class: "tabs", role: "tablist" },
    TABS.map(([key, label]) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          class: `tab ${state.tab === key ? "active" : ""}`,
          "aria-selected": state.tab === key ? "true" : "false",
          dataset: { tab: key },
          onclick: () => {
            state.tab = key;
            redraw();
          },
        },
        label,
        counts[key] !== undefined ? h("span", { class: "count" }, String(counts[key])) : null,
      ),
    ),
  );
  const body = {
    timeline: () => timeline(data, state, redraw),
    context: () => contextTab(data),
    children: () => childrenTab(data),
    events: () => eventsTab(data),
  }[state.tab]();
  return h("section", { class: "card tabs-card" }, bar, h("div", { class: "tab-body" }, body));
}

/** The history as runs of steps: each attempt with its timing, context, output and error;
 * waits and retries between them. */
export function timelineItems(history) {
  const items = [];
  let attempt = null;
  let wait = null;
  for (const event of history) {
    switch (event.type) {
      case "step.started":
        attempt = {
          kind: "attempt",
          step_id: event.step_id,
          attempt: event.attempt || 1,
          started_at: event.at,
          context: event.data?.context,
          contextOmitted: event.data?.context_omitted_bytes,
        };
        items.push(attempt);
        break;
      case "step.completed":
        if (!attempt || attempt.step_id !== event.step_id || attempt.outcome) {
          attempt = { kind: "attempt", step_id: event.step_id, attempt: event.attempt || 1, started_at: event.started_at || event.at };
          items.push(attempt);
        }
        Object.assign(attempt, {
          outcome: event.outcome,
          handler_type: event.handler_type,
          finished_at: event.finished_at || event.at,
          duration_ms: event.duration_ms,
          error: event.error,
          output: event.data?.output,
          hasOutput: event.data && "output" in event.data,
        });
        break;
      case "step.retry":
        items.push({ kind: "retry", step_id: event.step_id, at: event.at, attempt: event.attempt, error: event.error, delay_ms: event.data?.delay_ms, wake_at: event.data?.wake_at });
        break;
      case "execution.waiting":
        wait = { kind: "wait", step_id: event.step_id, since: event.at, waitKind: event.data?.kind, reason: event.data?.reason, wake_at: event.data?.wake_at };
        items.push(wait);
        break;
      case "execution.resumed":
        if (wait && !wait.until) Object.assign(wait, { until: event.at, trigger: event.data?.trigger });
        wait = null;
        break;
      case "transition":
        if (attempt && attempt.step_id === event.step_id) attempt.next = event.data?.to ?? null;
        break;
      case "execution.created":
      case "execution.completed":
      case "execution.failed":
      case "execution.cancelled":
        items.push({ kind: "milestone", type: event.type, at: event.at, step_id: event.step_id, error: event.error, data: event.data });
        break;
      default:
        break;
    }
  }
  return items;
}

function timeline({ execution: e, history }, state, redraw) {
  const items = timelineItems(history);
  if (!items.length) return empty("No history", "This execution was created without history (record_history=False).");
  const spanStart = new Date(e.created_at).getTime();
  const spanEnd = TERMINAL.includes(e.status) ? new Date(e.finished_at || e.updated_at).getTime() : Date.now();
  const total = Math.max(spanEnd - spanStart, 1);
  const bar = (from, to, className) => {
    const left = ((new Date(from).getTime() - spanStart) / total) * 100;
    const right = to ? ((new Date(to).getTime() - spanStart) / total) * 100 : 100;
    const node = h("span", { class: `bar ${className}` });
    node.style.left = `${Math.min(Math.max(left, 0), 99.6)}%`;
    node.style.width = `${Math.max(right - left, 0.4)}%`;
    return h("div", { class: "track" }, node);
  };
  const filter = state.selected;
  const rows = items
    .filter((item) => !filter || item.step_id === filter)
    .map((item, index) => {
      if (item.kind === "milestone") {
        const label = { "execution.created": "created", "execution.completed": "completed", "execution.failed": "failed", "execution.cancelled": "cancelled" }[item.type];
        return h(
          "li",
          { class: `tl-item milestone ${label}` },
          h("span", { class: "tl-dot" }),
          h("div", { class: "tl-main" }, h("span", { class: "tl-title" }, `Execution ${label}`), item.error ? h("span", { class: "tl-error" }, `${item.error.code}: ${item.error.message}`) : null),
          h("div", { class: "tl-when" }, absoluteTime(item.at)),
        );
      }
      if (item.kind === "retry") {
        return h(
          "li",
          { class: "tl-item retry" },
          h("span", { class: "tl-dot" }),
          h("div", { class: "tl-main" }, h("span", { class: "tl-title" }, `Retry ${item.attempt ?? ""} of `, h("code", {}, item.step_id), ` in ${duration(item.delay_ms)}`), item.error ? h("span", { class: "tl-error" }, `after ${item.error.code}: ${item.error.message}`) : null),
          h("div", { class: "tl-when" }, absoluteTime(item.at)),
        );
      }
      if (item.kind === "wait") {
        const waited = between(item.since, item.until || (TERMINAL.includes(e.status) ? e.finished_at : null));
        return h(
          "li",
          { class: `tl-item wait ${item.until ? "" : "open"}` },
          h("span", { class: "tl-dot" }),
          h(
            "div",
            { class: "tl-main" },
            h("span", { class: "tl-title" }, item.until ? `Waited ${duration(waited)}` : `Waiting for ${duration(waited)}`, ` (${item.waitKind || "?"})`, item.until && item.trigger ? `, resumed by ${item.trigger}` : null),
            item.reason ? h("span", { class: "tl-note" }, item.reason) : null,
            bar(item.since, item.until || null, "bar-wait"),
          ),
          h("div", { class: "tl-when" }, absoluteTime(item.since)),
        );
      }
      const key = `${item.step_id}#${index}`;
      const open = state.open.has(key);
      const outcome = item.outcome || (TERMINAL.includes(e.status) ? "unknown" : "running");
      const toggle = () => {
        if (open) state.open.delete(key);
        else state.open.add(key);
        redraw();
      };
      return h(
        "li",
        { class: `tl-item attempt tl-${outcome} ${open ? "open" : ""}`, dataset: { step: item.step_id } },
        h("span", { class: "tl-dot" }),
        h(
          "div",
          { class: "tl-main" },
          h(
            "button",
            { type: "button", class: "tl-head", "aria-expanded": open ? "true" : "false", onclick: toggle },
            h("code", { class: "tl-step" }, item.step_id),
            item.handler_type ? h("span", { class: "tl-type" }, item.handler_type) : null,
            item.attempt > 1 ? h("span", { class: "pill" }, `attempt ${item.attempt}`) : null,
            h("span", { class: `outcome outcome-${outcome}` }, outcome),
            item.next !== undefined ? h("span", { class: "tl-next" }, "→ ", item.next ?? "end") : null,
            h("span", { class: "tl-duration" }, item.duration_ms !== undefined && item.duration_ms !== null ? duration(item.duration_ms) : item.outcome ? "" : `${duration(between(item.started_at, null))}…`),
          ),
          item.error ? h("span", { class: "tl-error" }, `${item.error.code}: ${item.error.message}`) : null,
          bar(item.started_at, item.finished_at || null, `bar-${outcome}`),
          open ? attemptDetail(item) : null,
        ),
        h("div", { class: "tl-when" }, absoluteTime(item.started_at)),
      );
    });
  return h(
    "div",
    {},
    filter
      ? h(
          "div",
          { class: "filter-note" },
          "Only step ",
          h("code", {}, filter),
          " ",
          h("button", { type: "button", class: "link-button", onclick: () => ((state.selected = null), redraw()) }, "show every step"),
        )
      : h("div", { class: "filter-note muted" }, "Click a step for its context and output; click a node of the graph to see only that step."),
    h("ol", { class: "timeline" }, rows),
  );
}

function attemptDetail(item) {
  const before =
    item.context !== undefined
      ? jsonView(item.context)
      : item.contextOmitted !== undefined
        ? h("p", { class: "muted" }, `Too large to keep in the history (${item.contextOmitted.toLocaleString()} bytes).`)
        : h("p", { class: "muted" }, "Not recorded.");
  const output = item.hasOutput ? jsonView(item.output) : h("p", { class: "muted" }, item.outcome === "success" ? "No output." : item.outcome ? `No output (${item.outcome}).` : "Not finished yet.");
  return h(
    "div",
    { class: "attempt-detail" },
    h("div", { class: "pane" }, h("div", { class: "pane-title" }, "Context before the step"), before),
    h("div", { class: "pane" }, h("div", { class: "pane-title" }, "Output"), output),
    item.error ? h("div", { class: "pane wide" }, h("div", { class: "pane-title" }, "Error"), jsonView(item.error)) : null,
  );
}

function contextTab({ execution: e, history }) {
  const lastOutput = [...history].reverse().find((event) => event.type === "step.completed" && event.data && "output" in event.data);
  return h(
    "div",
    { class: "context-grid" },
    h("div", { class: "pane" }, h("div", { class: "pane-title" }, TERMINAL.includes(e.status) ? "Final context" : "Current context", copyButton(JSON.stringify(e.context, null, 2), "Copy the context")), jsonView(e.context)),
    h(
      "div",
      { class: "pane" },
      h("div", { class: "pane-title" }, "Output of the last step", lastOutput ? [" ", h("code", {}, lastOutput.step_id)] : null),
      lastOutput ? jsonView(lastOutput.data.output) : h("p", { class: "muted" }, "No step has recorded an output yet."),
      h("div", { class: "pane-title spaced" }, "Metadata"),
      Object.keys(e.metadata || {}).length ? jsonView(e.metadata) : h("p", { class: "muted" }, "None."),
    ),
  );
}

function childrenTab({ children }) {
  if (!children.length) return empty("No children", "Sub-flow and parallel steps start child executions; this one started none.");
  return h(
    "table",
    { class: "table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Execution"), h("th", {}, "Flow"), h("th", {}, "Branch"), h("th", {}, "Step"), h("th", {}, "Created"))),
    h(
      "tbody",
      {},
      children.map((c) =>
        h(
          "tr",
          {},
          h("td", {}, badge(c.status)),
          h("td", {}, execLink(c.id)),
          h("td", {}, c.flow_id, h("span", { class: "version" }, c.flow_version)),
          h("td", {}, c.branch_index ?? "—"),
          h("td", {}, c.current_step_id ? h("code", {}, c.current_step_id) : "—"),
          h("td", {}, timeEl(c.created_at)),
        ),
      ),
    ),
  );
}

function eventsTab({ history }) {
  return h(
    "table",
    { class: "table events-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "At"), h("th", {}, "Event"), h("th", {}, "Step"), h("th", {}, "Details"))),
    h(
      "tbody",
      {},
      history.map((event) => {
        const details = { ...event };
        for (const name of ["id", "execution_id", "type", "at", "step_id"]) delete details[name];
        for (const [name, value] of Object.entries(details)) if (value === null || (typeof value === "object" && !Object.keys(value).length)) delete details[name];
        const text = JSON.stringify(details);
        return h(
          "tr",
          {},
          h("td", { class: "nowrap" }, absoluteTime(event.at)),
          h("td", {}, h("span", { class: `event-type ev-${event.type.replace(".", "-")}` }, event.type)),
          h("td", {}, event.step_id ? h("code", {}, event.step_id) : "—"),
          h("td", { class: "details" }, h("code", { title: text }, text.length > 240 ? `${text.slice(0, 240)}…` : text)),
        );
      }),
    ),
  );
}
