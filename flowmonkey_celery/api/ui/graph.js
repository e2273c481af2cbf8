// A flow drawn as an SVG graph, laid out here (no library), top to bottom in the layered
// (Sugiyama) way: the steps are explored from the initial one, breadth first, and the edges
// that loop back become upward ones; each step's rank is its longest distance from the initial
// step along the others, so every edge points down; an edge that spans ranks passes through
// placeholders, so it never crosses a step; within a rank, steps are ordered by the mean
// position of their neighbours (fewer crossings). Edges: every transition (success, failure,
// resume, timeout) and every routing target of `conditional` and `switch` steps. An
// execution's path (from its history) is highlighted and its current step marked.

import { s } from "./dom.js";

export const END = "\u0000end";
const NODE_W = 176;
const NODE_H = 50;
const GAP_X = 30;
const GAP_Y = 46;
const MARGIN = 24;
const END_R = 17;
const DUMMY_W = 14;

const field = (object, camel, snake) => {
  if (!object) return [false, undefined];
  if (camel in object) return [true, object[camel]];
  if (snake in object) return [true, object[snake]];
  return [false, undefined];
};

function conditionLabel(condition) {
  if (!condition || typeof condition !== "object") return "if";
  for (const group of ["all", "any", "not"]) {
    if (group in condition) return `${group}(…)`;
  }
  const value = condition.value === undefined ? "" : ` ${JSON.stringify(condition.value)}`;
  return `${condition.path ?? "input"} ${condition.op ?? "?"}${value}`;
}

/** Every edge of a flow definition: {from, to (a step id or END), kind, label}. */
export function flowEdges(flow) {
  const edges = [];
  const add = (from, to, kind, label = "") => edges.push({ from, to: to ?? END, kind, label });
  for (const [id, step] of Object.entries(flow.steps || {})) {
    const transitions = step.transitions || {};
    const config = step.config || {};
    const routing = step.type === "conditional" || step.type === "switch";
    if (step.type === "conditional") {
      (config.conditions || []).forEach((condition) => add(id, condition?.target, "route", conditionLabel(condition)));
    }
    if (step.type === "switch") {
      for (const [value, target] of Object.entries(config.cases || {})) add(id, target, "route", `= ${value}`);
    }
    if (routing && "default" in config) add(id, config.default, "route", "default");
    const [hasSuccess, success] = field(transitions, "onSuccess", "on_success");
    if (hasSuccess || !routing) add(id, success, "success");
    const [hasFailure, failure] = field(transitions, "onFailure", "on_failure");
    if (hasFailure && failure) add(id, failure, "failure", "on failure");
    const [hasResume, resume] = field(transitions, "onResume", "on_resume");
    if (hasResume && (resume ?? null) !== (success ?? null)) add(id, resume, "resume", "on resume");
    const [hasTimeout, timeout] = field(transitions, "onTimeout", "on_timeout");
    if (hasTimeout) add(id, timeout, "timeout", "on timeout");
  }
  return edges;
}


/** The layered layout of a flow: items (steps, END, placeholders) with positions, and each
 * edge's chain of items from its upper end to its lower end. */
export function layout(flow) {
  const steps = Object.keys(flow.steps || {});
  const initial = flow.initialStepId ?? flow.initial_step_id ?? steps[0];
  const edges = flowEdges(flow).filter((e) => e.to === END || e.to in (flow.steps || {}));
  const hasEnd = edges.some((e) => e.to === END);
  const nodes = hasEnd ? [...steps, END] : [...steps];
  const targets = new Map(nodes.map((id) => [id, []]));
  for (const edge of edges) {
    if (edge.from !== edge.to && !targets.get(edge.from).includes(edge.to)) targets.get(edge.from).push(edge.to);
  }

  // Discovery order: breadth first from the initial step, then from any step left over.
  const order = [];
  const seen = new Set();
  const explore = (start) => {
    const queue = [start];
    seen.add(start);
    while (queue.length) {
      const id = queue.shift();
      order.push(id);
      for (const next of targets.get(id)) {
        if (!seen.has(next)) {
          seen.add(next);
          queue.push(next);
        }
      }
    }
  };
  if (initial in (flow.steps || {})) explore(initial);
  for (const id of nodes) if (!seen.has(id)) explore(id);

  // Edges that close a loop (to a step on the current depth-first path) become upward ones.
  const back = new Set();
  const mark = new Map();
  for (const root of order) {
    if (mark.has(root)) continue;
    const stack = [[root, 0]];
    mark.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = targets.get(top[0])[top[1]++];
      if (next === undefined) {
        mark.set(top[0], 2);
        stack.pop();
      } else if (mark.get(next) === 1) {
        back.add(`${top[0]}>${next}`);
      } else if (!mark.has(next)) {
        mark.set(next, 1);
        stack.push([next, 0]);
      }
    }
  }

  // Ranks: the longest path from a source over the downward edges (so every edge goes down).
  const rank = new Map(nodes.map((id) => [id, 0]));
  const incoming = new Map(nodes.map((id) => [id, 0]));
  const down = [];
  for (const [from, list] of targets) {
    for (const to of list) {
      if (!back.has(`${from}>${to}`)) {
        down.push([from, to]);
        incoming.set(to, incoming.get(to) + 1);
      }
    }
  }
  const ready = order.filter((id) => incoming.get(id) === 0);
  while (ready.length) {
    const id = ready.shift();
    for (const [from, to] of down) {
      if (from !== id) continue;
      rank.set(to, Math.max(rank.get(to), rank.get(id) + 1));
      incoming.set(to, incoming.get(to) - 1);
      if (incoming.get(to) === 0) ready.push(to);
    }
  }
  if (hasEnd) rank.set(END, Math.max(0, ...steps.map((id) => rank.get(id))) + 1);

  // Items per rank, with a placeholder wherever an edge passes a rank.
  const ranks = [];
  const item = new Map();
  const addItem = (id, r, kind) => {
    item.set(id, { id, rank: r, kind, w: kind === "node" ? NODE_W : kind === "end" ? END_R * 2 : DUMMY_W });
    (ranks[r] ||= []).push(id);
  };
  for (const id of order) addItem(id, rank.get(id), id === END ? "end" : "node");
  const pairs = new Map();
  for (const edge of edges) {
    const key = `${edge.from}>${edge.to === END ? "end" : edge.to}`;
    const known = pairs.get(key);
    if (known) {
      if (edge.label && !known.labels.includes(edge.label)) known.labels.push(edge.label);
      if (known.kind === "success") known.kind = edge.kind;
      continue;
    }
    pairs.set(key, { ...edge, key, labels: edge.label ? [edge.label] : [], self: edge.from === edge.to, up: back.has(`${edge.from}>${edge.to}`) });
  }
  const chains = [];
  for (const edge of [...pairs.values()].sort((a, b) => order.indexOf(a.from) - order.indexOf(b.from))) {
    if (edge.self) continue;
    const [upper, lower] = edge.up ? [edge.to, edge.from] : [edge.from, edge.to];
    const chain = [upper];
    for (let r = rank.get(upper) + 1; r < rank.get(lower); r++) {
      const id = `\u0001${edge.key}@${r}`;
      addItem(id, r, "dummy");
      chain.push(id);
    }
    chain.push(lower);
    chains.push({ edge, chain });
  }

  // Order within ranks: sweeps down and up, each item at the mean position of its neighbours.
  const above = new Map();
  const below = new Map();
  for (const { chain } of chains) {
    for (let i = 0; i + 1 < chain.length; i++) {
      (below.get(chain[i]) || below.set(chain[i], []).get(chain[i])).push(chain[i + 1]);
      (above.get(chain[i + 1]) || above.set(chain[i + 1], []).get(chain[i + 1])).push(chain[i]);
    }
  }
  const position = new Map();
  const place = () => ranks.forEach((ids) => ids.forEach((id, i) => position.set(id, i)));
  place();
  const sortBy = (ids, neighbours) => {
    const weight = new Map(
      ids.map((id) => {
        const list = neighbours.get(id) || [];
        return [id, list.length ? list.reduce((sum, n) => sum + position.get(n), 0) / list.length : position.get(id)];
      }),
    );
    ids.sort((a, b) => weight.get(a) - weight.get(b) || position.get(a) - position.get(b));
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    for (let r = 1; r < ranks.length; r++) sortBy(ranks[r], above);
    place();
    for (let r = ranks.length - 2; r >= 0; r--) sortBy(ranks[r], below);
    place();
  }

  // Coordinates: each item under the mean of its neighbours (straight edges), pushed apart
  // where they would overlap, keeping the order; a few passes down and up.
  const gap = (a, b) => (item.get(a).kind === "dummy" || item.get(b).kind === "dummy" ? GAP_X / 2 : GAP_X);
  ranks.forEach((ids, r) => {
    let x = 0;
    ids.forEach((id, i) => {
      const it = item.get(id);
      if (i) x += gap(ids[i - 1], id);
      Object.assign(it, { cx: x + it.w / 2, y: MARGIN + r * (NODE_H + GAP_Y) });
      x += it.w;
    });
    const shift = x / 2;
    for (const id of ids) item.get(id).cx -= shift;
  });
  const settle = (ids, neighbours) => {
    const wanted = ids.map((id) => {
      const list = neighbours.get(id) || [];
      return list.length ? list.reduce((sum, n) => sum + item.get(n).cx, 0) / list.length : item.get(id).cx;
    });
    const at = [...wanted];
    for (let i = 1; i < ids.length; i++) {
      const min = at[i - 1] + (item.get(ids[i - 1]).w + item.get(ids[i]).w) / 2 + gap(ids[i - 1], ids[i]);
      at[i] = Math.max(at[i], min);
    }
    // Pushing only rightwards drifts the rank: centre it back on what its items wanted.
    const drift = at.reduce((sum, x, i) => sum + x - wanted[i], 0) / ids.length;
    ids.forEach((id, i) => (item.get(id).cx = at[i] - drift));
  };
  for (let pass = 0; pass < 3; pass++) {
    for (let r = 1; r < ranks.length; r++) settle(ranks[r], above);
    for (let r = ranks.length - 2; r >= 0; r--) settle(ranks[r], below);
  }
  const left = Math.min(...[...item.values()].map((it) => it.cx - it.w / 2));
  const right = Math.max(...[...item.values()].map((it) => it.cx + it.w / 2));
  for (const it of item.values()) {
    it.cx += MARGIN - left;
    it.x = it.cx - it.w / 2;
  }
  const selfLoops = [...pairs.values()].filter((e) => e.self);
  return {
    item,
    chains,
    selfLoops,
    initial,
    width: right - left + MARGIN * 2 + (selfLoops.length ? 30 : 0),
    height: MARGIN * 2 + ranks.length * (NODE_H + GAP_Y) - GAP_Y,
  };
}

function truncate(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// The top and bottom of an item (an END circle is smaller than a step's box).
const topOf = (it) => (it.kind === "end" ? it.y + NODE_H / 2 - END_R : it.y);
const bottomOf = (it) => (it.kind === "end" ? it.y + NODE_H / 2 + END_R : it.y + NODE_H);

/** The point at `t` of the vertical-tangent cubic from p to q. */
function along(p, q, t) {
  const my = (p.y + q.y) / 2;
  const u = 1 - t;
  return {
    x: p.x + (q.x - p.x) * (3 * t * t - 2 * t * t * t),
    y: u * u * u * p.y + 3 * u * u * t * my + 3 * u * t * t * my + t * t * t * q.y,
  };
}

/**
 * The SVG of a flow. `state` (optional): {visited: Set of step ids, taken: Set of "from>to"
 * (to END as "<step>>end"), current: step id, currentKind: "running" | "waiting" | "failed" |
 * "cancelled", runs: Map step id -> calls, finished: bool (completed)}; `onSelect(stepId)` on
 * a click on a step.
 */
export function flowGraph(flow, state = {}, onSelect = null) {
  const { item, chains, selfLoops, initial, width, height } = layout(flow);
  const visited = state.visited || new Set();
  const taken = state.taken || new Set();
  const hasState = Boolean(state.visited);

  const svg = s("svg", {
    class: `flow-graph ${hasState ? "with-state" : ""}`,
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `flow ${flow.id}`,
  });
  const defs = s("defs");
  for (const kind of ["plain", "taken", "failure", "route"]) {
    defs.append(
      s(
        "marker",
        { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
        s("path", { d: "M0 0L10 5L0 10z", class: `arrow arrow-${kind}` }),
      ),
    );
  }
  svg.append(defs);

  // Ports: the edges leaving the bottom (entering the top) of a step spread along it, in the
  // order of where they go (come from), so they do not start on top of each other.
  const ports = new Map();
  const port = (id, side, key) => ports.get(`${id}:${side}`)?.get(key);
  const spread = (id, side, entries) => {
    const it = item.get(id);
    entries.sort((a, b) => a[1] - b[1]);
    const span = it.kind === "node" ? it.w * 0.5 : 0;
    const map = new Map();
    entries.forEach(([key], i) => map.set(key, it.cx + (entries.length > 1 ? -span / 2 + (span * i) / (entries.length - 1) : 0)));
    ports.set(`${id}:${side}`, map);
  };
  const leaving = new Map();
  const entering = new Map();
  for (const { edge, chain } of chains) {
    (leaving.get(chain[0]) || leaving.set(chain[0], []).get(chain[0])).push([edge.key, item.get(chain[1]).cx]);
    const last = chain[chain.length - 1];
    (entering.get(last) || entering.set(last, []).get(last)).push([edge.key, item.get(chain[chain.length - 2]).cx]);
  }
  for (const [id, entries] of leaving) spread(id, "bottom", entries);
  for (const [id, entries] of entering) spread(id, "top", entries);

  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "edge-labels" });
  const drawEdge = (edge, d, labelAt) => {
    const isTaken = taken.has(edge.key);
    const kindClass = edge.kind === "failure" || edge.kind === "timeout" ? "failure" : edge.kind;
    const marker = isTaken ? "taken" : kindClass === "failure" ? "failure" : kindClass === "route" ? "route" : "plain";
    edgeLayer.append(
      s("path", {
        d,
        class: `edge edge-${kindClass} ${edge.up ? "edge-up" : ""} ${isTaken ? "taken" : ""}`,
        "marker-end": edge.up ? null : `url(#arrow-${marker})`,
        "marker-start": edge.up ? `url(#arrow-${marker})` : null,
        dataset: { edge: edge.key },
      }),
    );
    if (edge.labels.length) {
      const text = truncate(edge.labels.join(", "), 24);
      const w = text.length * 6.4 + 12;
      labelLayer.append(
        s(
          "g",
          { class: `edge-label ${isTaken ? "taken" : ""} label-${kindClass}`, transform: `translate(${labelAt.x} ${labelAt.y})` },
          s("rect", { x: -w / 2, y: -9, width: w, height: 18, rx: 9 }),
          s("text", { "text-anchor": "middle", y: 4 }, text),
        ),
      );
    }
  };
  for (const { edge, chain } of chains) {
    const first = item.get(chain[0]);
    const last = item.get(chain[chain.length - 1]);
    const points = [{ x: port(chain[0], "bottom", edge.key) ?? first.cx, y: bottomOf(first) }];
    for (const id of chain.slice(1, -1)) {
      const dummy = item.get(id);
      points.push({ x: dummy.cx, y: dummy.y }, { x: dummy.cx, y: dummy.y + NODE_H });
    }
    points.push({ x: port(chain[chain.length - 1], "top", edge.key) ?? last.cx, y: topOf(last) });
    // An upward edge is drawn along the same chain, its arrow at the upper end.
    let d = `M${points[0].x} ${points[0].y}`;
    for (let i = 0; i + 1 < points.length; i++) {
      const [p, q] = [points[i], points[i + 1]];
      const my = (p.y + q.y) / 2;
      d += i % 2 === 1 ? ` L${q.x} ${q.y}` : ` C${p.x} ${my} ${q.x} ${my} ${q.x} ${q.y}`;
    }
    // The label near where the edge leaves its step: the lower end of an upward edge.
    const n = points.length;
    drawEdge(edge, d, edge.up ? along(points[n - 2], points[n - 1], 0.55) : along(points[0], points[1], n === 2 ? 0.62 : 0.5));
  }
  for (const edge of selfLoops) {
    const it = item.get(edge.from);
    const x = it.x + it.w;
    const y = it.y + NODE_H / 2;
    drawEdge(edge, `M${x} ${y - 12} C${x + 34} ${y - 26} ${x + 34} ${y + 26} ${x} ${y + 12}`, { x: x + 26, y });
  }
  svg.append(edgeLayer, labelLayer);

  const nodeLayer = s("g", { class: "nodes" });
  if (item.has(initial)) {
    const it = item.get(initial);
    nodeLayer.append(s("circle", { class: "start-dot", cx: it.cx, cy: it.y - 10, r: 4 }), s("path", { class: "start-line", d: `M${it.cx} ${it.y - 6}V${it.y}` }));
  }
  for (const it of item.values()) {
    if (it.kind === "dummy") continue;
    if (it.kind === "end") {
      nodeLayer.append(
        s(
          "g",
          { class: `node end ${state.finished ? "visited" : hasState ? "unvisited" : ""}`, transform: `translate(${it.cx} ${it.y + NODE_H / 2})`, dataset: { step: "end" } },
          s("title", {}, "the flow completes"),
          s("circle", { r: END_R }),
          s("text", { y: 4, "text-anchor": "middle", class: "end-text" }, "end"),
        ),
      );
      continue;
    }
    const id = it.id;
    const step = flow.steps[id];
    const classes = ["node"];
    if (hasState) classes.push(visited.has(id) ? "visited" : "unvisited");
    if (state.current === id) classes.push("current", `current-${state.currentKind || "running"}`);
    const runs = state.runs?.get(id) || 0;
    const group = s(
      "g",
      {
        class: classes.join(" "),
        transform: `translate(${it.x} ${it.y})`,
        dataset: { step: id },
        tabindex: onSelect ? 0 : null,
        role: onSelect ? "button" : null,
        "aria-label": onSelect ? `step ${id}` : null,
      },
      s("title", {}, [id, step.name && step.name !== id ? step.name : null, `type: ${step.type}`, step.description].filter(Boolean).join("\n")),
      state.current === id ? s("rect", { class: "halo", x: -5, y: -5, width: NODE_W + 10, height: NODE_H + 10, rx: 13 }) : null,
      s("rect", { class: "box", width: NODE_W, height: NODE_H, rx: 9 }),
      s("rect", { class: "stripe", width: 4, height: NODE_H - 16, x: 0, y: 8, rx: 2 }),
      s("text", { x: 14, y: 21, class: "node-title" }, truncate(step.name || id, 21)),
      s("text", { x: 14, y: 37, class: "node-type" }, truncate(step.name && step.name !== id ? `${id} · ${step.type}` : step.type, 24)),
      runs > 1
        ? s("g", { class: "runs", transform: `translate(${NODE_W - 20} 12)` }, s("rect", { x: -13, y: -8, width: 28, height: 16, rx: 8 }), s("text", { x: 1, y: 4, "text-anchor": "middle" }, `×${runs}`))
        : null,
    );
    if (onSelect) {
      group.addEventListener("click", () => onSelect(id));
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          onSelect(id);
        }
      });
    }
    nodeLayer.append(group);
  }
  svg.append(nodeLayer);
  return svg;
}

/** What an execution's history says about the graph: visited steps, taken edges, calls. */
export function pathOf(execution, history) {
  const visited = new Set();
  const taken = new Set();
  const runs = new Map();
  let last = null;
  for (const event of history) {
    if (event.type === "step.started" && event.step_id) {
      visited.add(event.step_id);
      runs.set(event.step_id, (runs.get(event.step_id) || 0) + 1);
    }
    if (event.type === "transition" && event.data?.from) {
      taken.add(`${event.data.from}>${event.data.to ?? "end"}`);
      visited.add(event.data.from);
    }
    if (event.step_id) last = event.step_id;
  }
  const completed = execution.status === "completed";
  if (completed && last) taken.add(`${last}>end`);
  let current = null;
  let currentKind = null;
  if (!["completed", "cancelled"].includes(execution.status)) {
    current = execution.status === "failed" ? execution.error?.step_id || execution.current_step_id : execution.current_step_id;
    currentKind = execution.status === "failed" ? "failed" : execution.status === "waiting" ? "waiting" : "running";
  } else if (execution.status === "cancelled") {
    current = execution.current_step_id;
    currentKind = "cancelled";
  }
  return { visited, taken, runs, current, currentKind, finished: completed };
}
