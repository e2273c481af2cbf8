// The fleet: the beat's last tick, the workers seen, the depth of the step and tick queues,
// and how long the oldest waiting execution has waited (an admin key's view).

import { card, clear, duration, empty, errorBox, h, timeEl } from "./dom.js";

const REFRESH_MS = 3000;

export async function render(main, _route, ctx) {
  const page = h("div", { class: "page" }, h("header", { class: "page-head" }, h("div", {}, h("h1", {}, "Fleet"), h("p", { class: "subtitle" }, "What runs this deployment: beat, workers, queues."))));
  const body = h("div");
  page.append(body);
  main.append(page);
  if (!ctx.me.admin) {
    body.append(empty("The fleet view needs an admin API key", "Workers, queues and waiting counts are every tenant's. Sign in with a key made by `flowmonkey keys create NAME --admin`."));
    return;
  }
  const refresh = async () => {
    try {
      const fleet = await ctx.api("fleet");
      clear(body).append(view(fleet));
    } catch (error) {
      if (error.name !== "AbortError") clear(body).append(errorBox(error));
    }
  };
  await ctx.every(REFRESH_MS, refresh);
}

function view(fleet) {
  const alive = fleet.workers.filter((w) => w.alive);
  const queues = fleet.queues.items || [];
  const stepQueue = queues.find((q) => q.role === "steps");
  const waiting = fleet.waiting;
  const tick = fleet.tick;
  return h(
    "div",
    { class: "stack" },
    h(
      "div",
      { class: "stat-cards big" },
      stat("Last tick", tick.last_at ? timeEl(tick.last_at) : "never", tick.ok ? "good" : "bad", tick.ok ? `beat ticks every ${duration(tick.period_seconds * 1000)}` : "no recent tick: is a beat running?"),
      stat("Workers alive", `${alive.length}`, alive.length ? "good" : "bad", `${fleet.workers.length} seen in the last day`),
      stat(
        "Queued steps",
        stepQueue ? stepQueue.messages.toLocaleString() : "—",
        fleet.queues.error ? "bad" : "",
        fleet.queues.error || (stepQueue ? `queue ${stepQueue.name}` : "no broker"),
      ),
      stat("Waiting", waiting.waiting_count.toLocaleString(), "", waiting.oldest_waiting_since ? ["oldest for ", duration(waiting.oldest_waiting_seconds * 1000)] : "none waits"),
      stat(
        "Due, not woken",
        waiting.due_count.toLocaleString(),
        waiting.due_lag_seconds > Math.max(30, tick.period_seconds * 10) ? "bad" : "",
        waiting.due_count ? ["oldest due ", duration(waiting.due_lag_seconds * 1000), " ago"] : "the tick keeps up",
      ),
    ),
    h(
      "div",
      { class: "two-columns" },
      card(
        "Workers",
        fleet.workers.length
          ? h(
              "table",
              { class: "table" },
              h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Worker"), h("th", {}, "Last seen"))),
              h(
                "tbody",
                {},
                fleet.workers.map((w) =>
                  h("tr", {}, h("td", {}, h("span", { class: `health ${w.alive ? "ok" : "gone"}`, title: w.alive ? "alive" : "not seen lately" })), h("td", { class: "mono" }, w.name), h("td", {}, timeEl(w.last_seen_at))),
                ),
              ),
            )
          : empty("No worker seen", "Start one: flowmonkey worker (or celery -A workers.app worker)."),
      ),
      card(
        "Queues",
        h(
          "div",
          {},
          fleet.queues.error ? h("div", { class: "alert bad" }, fleet.queues.error) : null,
          queues.length
            ? h(
                "table",
                { class: "table" },
                h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", {}, "Role"), h("th", { class: "num" }, "Messages"))),
                h(
                  "tbody",
                  {},
                  queues.map((q) =>
                    h(
                      "tr",
                      {},
                      h("td", { class: "mono" }, q.name),
                      h("td", {}, q.role || h("span", { class: "muted" }, "flow queue")),
                      // Redis keeps no empty queue: "not declared" there only means empty.
                      h("td", { class: "num", title: q.exists ? null : "no messages (the broker holds no such queue yet)" }, q.messages.toLocaleString()),
                    ),
                  ),
                ),
              )
            : null,
          fleet.queues.broker ? h("p", { class: "muted small" }, "Broker ", h("code", {}, fleet.queues.broker)) : null,
        ),
      ),
    ),
    h("p", { class: "muted small" }, "API heartbeat ", fleet.api.last_at ? timeEl(fleet.api.last_at) : "never", " · as of ", timeEl(fleet.now)),
  );
}

function stat(label, value, tone, note) {
  return h("div", { class: `stat ${tone}` }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), note ? h("div", { class: "stat-note" }, note) : null);
}
