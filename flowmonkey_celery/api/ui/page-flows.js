// Flows: the list with their versions, and a flow's page: its diagram, steps and definition,
// any version of it.

import { card, clear, duration, empty, h, jsonView, loading } from "./dom.js";
import { END, flowEdges, flowGraph } from "./graph.js";
import { setParams } from "./router.js";

export async function render(main, { id, params }, ctx) {
  if (id) return flowPage(main, id, params.get("version"), ctx);
  const page = h("div", { class: "page" }, h("header", { class: "page-head" }, h("div", {}, h("h1", {}, "Flows"), h("p", { class: "subtitle" }, "The flows this key may run, with every registered version."))), loading());
  main.append(page);
  const { items } = await ctx.api("flows");
  page.lastChild.remove();
  if (!items.length) {
    page.append(empty("No flows", "Put YAML or JSON flows in the folder FLOWMONKEY_FLOWS names, or POST /flows."));
    return;
  }
  page.append(
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Flow"), h("th", {}, "Name"), h("th", {}, "Versions"), h("th", { class: "num" }, "Steps"), h("th", {}, "Owner"), h("th", {}, ""))),
      h(
        "tbody",
        {},
        items.map((flow) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/flows/${encodeURIComponent(flow.id)}`, class: "strong" }, flow.id)),
            h("td", {}, flow.name || h("span", { class: "muted" }, "—")),
            h(
              "td",
              {},
              flow.versions
                .slice(-6)
                .reverse()
                .map((v) => h("a", { class: `version-chip ${v === flow.latest_version ? "latest" : ""}`, href: `#/flows/${encodeURIComponent(flow.id)}?version=${encodeURIComponent(v)}` }, v)),
              flow.versions.length > 6 ? h("span", { class: "muted" }, ` +${flow.versions.length - 6}`) : null,
            ),
            h("td", { class: "num" }, String(flow.steps)),
            h("td", {}, flow.tenant_id || h("span", { class: "muted" }, "shared")),
            h("td", {}, h("a", { href: `#/executions?flow=${encodeURIComponent(flow.id)}` }, "Executions →")),
          ),
        ),
      ),
    ),
  );
}

async function flowPage(main, id, version, ctx) {
  const page = h("div", { class: "page" }, loading());
  main.append(page);
  const [flow, list] = await Promise.all([
    ctx.api(`flows/${encodeURIComponent(id)}`, { query: { version } }),
    ctx.api("flows"),
  ]);
  const summary = list.items.find((f) => f.id === id) || { versions: [flow.version], latest_version: flow.version };
  const picker = h(
    "select",
    { class: "input", name: "version", "aria-label": "Version" },
    [...summary.versions].reverse().map((v) => h("option", { value: v, selected: v === flow.version }, v === summary.latest_version ? `${v} (latest)` : v)),
  );
  picker.addEventListener("change", () => setParams({ version: picker.value }));
  const steps = Object.entries(flow.steps || {});
  const edges = flowEdges(flow);
  let selected = null;
  const graphHolder = h("div", { class: "graph-scroll" });
  const rows = new Map();
  const drawGraph = () => {
    const svg = flowGraph(flow, {}, (stepId) => {
      selected = selected === stepId ? null : stepId;
      drawGraph();
      for (const [step, row] of rows) row.classList.toggle("selected", step === selected);
      if (selected) rows.get(selected)?.scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
    if (selected) svg.querySelector(`[data-step="${CSS.escape(selected)}"]`)?.classList.add("selected");
    clear(graphHolder).append(svg);
  };
  drawGraph();

  const stepTable = h(
    "table",
    { class: "table steps-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Type"), h("th", {}, "Input"), h("th", {}, "Output key"), h("th", {}, "Goes to"), h("th", {}, "Retry / timeouts"))),
    h(
      "tbody",
      {},
      steps.map(([stepId, step]) => {
        const out = edges.filter((e) => e.from === stepId);
        const row = h(
          "tr",
          { dataset: { step: stepId } },
          h("td", {}, h("code", { class: "strong" }, stepId), step.name && step.name !== stepId ? h("div", { class: "muted small" }, step.name) : null, stepId === (flow.initialStepId ?? flow.initial_step_id) ? h("span", { class: "tag" }, "initial") : null),
          h("td", {}, h("span", { class: "tl-type" }, step.type)),
          h("td", { class: "small" }, selectorText(step.input)),
          h("td", {}, step.outputKey ?? step.output_key ? h("code", {}, step.outputKey ?? step.output_key) : h("span", { class: "muted" }, "merged")),
          h(
            "td",
            { class: "small" },
            out.map((e) => h("div", {}, h("span", { class: `edge-kind edge-kind-${e.kind}` }, e.label || (e.kind === "success" ? "next" : e.kind)), " ", e.to === END ? h("span", { class: "muted" }, "end") : h("code", {}, e.to))),
          ),
          h("td", { class: "small" }, retryText(step)),
        );
        rows.set(stepId, row);
        return row;
      }),
    ),
  );

  clear(page).append(
    h(
      "header",
      { class: "page-head" },
      h(
        "div",
        {},
        h("nav", { class: "crumbs" }, h("a", { href: "#/flows" }, "Flows"), " / ", id),
        h("h1", { class: "title-row" }, flow.name || flow.id, h("span", { class: "version" }, flow.version)),
        flow.description ? h("p", { class: "subtitle" }, flow.description) : h("p", { class: "subtitle mono" }, flow.id),
      ),
      h("div", { class: "actions" }, h("label", { class: "field inline" }, h("span", {}, "Version"), picker), h("a", { class: "button", href: `#/executions?flow=${encodeURIComponent(id)}` }, "Executions")),
    ),
    card("Diagram", graphHolder, { className: "graph-card whole" }),
    card(`Steps (${steps.length})`, stepTable),
    card("Definition", jsonView(flow)),
  );
}

function selectorText(input) {
  if (!input) return "full context";
  switch (input.type) {
    case "key":
      return `key ${input.key}`;
    case "keys":
      return `keys ${(input.keys || []).join(", ")}`;
    case "path":
      return `path ${input.path}`;
    case "template":
      return "template";
    case "static":
      return "static value";
    default:
      return "full context";
  }
}

function retryText(step) {
  const parts = [];
  if (step.retry) {
    const r = step.retry;
    parts.push(`${r.maxAttempts ?? r.max_attempts ?? 3} retries, backoff ${duration(r.backoffMs ?? r.backoff_ms ?? 1000)}`);
  }
  const timeout = step.timeoutMs ?? step.timeout_ms;
  if (timeout) parts.push(`step ${duration(timeout)}`);
  const wait = step.waitTimeoutMs ?? step.wait_timeout_ms;
  if (wait) parts.push(`wait ${duration(wait)}`);
  return parts.length ? parts.join("; ") : h("span", { class: "muted" }, "—");
}
