// The three things an operator does to an execution: resume it (with JSON data), cancel it,
// and replay it from a step with an edited context. Each is a dialog that calls the API and
// shows its refusal plainly, without closing.

import { api } from "./api.js";
import { button, clear, dialog, errorBox, h, jsonEditor, jsonView, mergePatch, notify, shortId } from "./dom.js";

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/**
 * Resume a waiting execution. `waitingFor` (optional): {step_name, reason, output_key} to
 * say where the data lands. Resolves with the resumed execution, or null.
 */
export function resumeDialog(execution, waitingFor = {}) {
  const outputKey = waitingFor.output_key;
  const editor = jsonEditor("{\n  \"approved\": true\n}", {
    rows: 7,
    label: "Resume data",
    check: (value) => (outputKey || isObject(value) ? null : "this step has no output_key: the data is merged into the context, so it must be a JSON object"),
  });
  const problem = h("div");
  return dialog("Resume execution", (close) => {
    const submit = button("Resume", { kind: "primary", iconName: "play" });
    editor.onChange((state) => (submit.disabled = !state.ok));
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      clear(problem);
      try {
        const resumed = await api(`executions/${encodeURIComponent(execution.id)}/resume`, {
          method: "POST",
          body: { data: editor.value() },
        });
        notify(`Resumed ${shortId(execution.id)}`);
        close(resumed);
      } catch (error) {
        problem.append(errorBox(error));
        submit.disabled = false;
      }
    });
    return {
      body: [
        h(
          "p",
          { class: "dialog-lead" },
          h("strong", {}, execution.flow_id),
          " waits at ",
          h("code", {}, waitingFor.step_name || execution.current_step_id || "?"),
          execution.wait_reason || waitingFor.reason ? [": ", h("em", {}, execution.wait_reason || waitingFor.reason)] : null,
        ),
        h(
          "p",
          { class: "muted small" },
          outputKey ? ["The data is stored at ", h("code", {}, outputKey), " in the context, then the flow goes on."] : "The data (an object) is merged into the context, then the flow goes on.",
        ),
        h("label", { class: "field" }, h("span", {}, "Data (JSON)"), editor.node),
        problem,
      ],
      actions: [button("Cancel", { kind: "ghost", onclick: () => close(null) }), submit],
    };
  });
}

/** Cancel an execution (and its children) after a confirmation. */
export function cancelDialog(execution) {
  const reason = h("input", { class: "input", name: "reason", placeholder: "Why (kept with the execution)", maxlength: 1000, "aria-label": "Reason" });
  const problem = h("div");
  return dialog("Cancel execution?", (close) => {
    const submit = button("Cancel execution", { kind: "danger", iconName: "stop" });
    submit.addEventListener("click", async () => {
      submit.disabled = true;
      clear(problem);
      try {
        const result = await api(`executions/${encodeURIComponent(execution.id)}/cancel`, {
          method: "POST",
          body: { reason: reason.value.trim() || null },
        });
        const children = result.children_cancelled?.length;
        notify(`Cancelled ${shortId(execution.id)}${children ? ` and ${children} child execution(s)` : ""}`);
        close(result);
      } catch (error) {
        problem.append(errorBox(error));
        submit.disabled = false;
      }
    });
    return {
      body: [
        h("p", { class: "dialog-lead" }, "The execution ", h("code", {}, shortId(execution.id)), ` (${execution.status}) of `, h("strong", {}, execution.flow_id), " stops for good; its running children are cancelled too. A step already running finishes, but nothing after it runs."),
        h("label", { class: "field" }, h("span", {}, "Reason"), reason),
        problem,
      ],
      actions: [button("Keep it", { kind: "ghost", onclick: () => close(null) }), submit],
    };
  });
}

/** The context before each run of each step, from the history (latest run wins). */
export function contextsBefore(history) {
  const found = new Map();
  for (const event of history) {
    if (event.type !== "step.started" || !event.step_id) continue;
    const data = event.data || {};
    if ("context" in data) found.set(event.step_id, { context: data.context, at: event.at });
    else if ("context_omitted_bytes" in data) found.set(event.step_id, { omitted: data.context_omitted_bytes, at: event.at });
    else if (!found.has(event.step_id)) found.set(event.step_id, { unknown: true, at: event.at });
  }
  return found;
}

/**
 * Replay from a step: pick one the execution ran, see the context it had before it, edit a
 * JSON merge patch, start. Resolves with the new execution, or null.
 */
export function replayDialog(execution, history, flow, { fromStep = null } = {}) {
  const before = contextsBefore(history);
  const steps = [...before.keys()];
  const preferred = fromStep && before.has(fromStep) ? fromStep : execution.error?.step_id && before.has(execution.error.step_id) ? execution.error.step_id : steps[steps.length - 1];
  const select = h(
    "select",
    { class: "input", name: "from_step", "aria-label": "From step" },
    steps.map((id) => {
      const step = flow?.steps?.[id];
      return h("option", { value: id, selected: id === preferred }, step?.name && step.name !== id ? `${id} (${step.name})` : id);
    }),
  );
  const beforePane = h("div", { class: "pane-body" });
  const previewPane = h("div", { class: "pane-body" });
  const editor = jsonEditor("{}", {
    rows: 9,
    label: "Context patch",
    check: (value) => (isObject(value) ? null : "a patch is a JSON object: {} changes nothing"),
  });
  const problem = h("div");
  const show = () => {
    const known = before.get(select.value) || {};
    clear(beforePane);
    clear(previewPane);
    if (known.omitted !== undefined) {
      beforePane.append(h("p", { class: "muted" }, `The context was too large to keep in the history (${known.omitted.toLocaleString()} bytes); the replay starts from the engine's own snapshot.`));
    } else if (known.unknown) {
      beforePane.append(h("p", { class: "muted" }, "The history of this step has no context snapshot."));
    } else {
      beforePane.append(jsonView(known.context));
    }
    if (known.context !== undefined && editor.valid()) previewPane.append(jsonView(mergePatch(known.context, editor.value())));
    else if (!editor.valid()) previewPane.append(h("p", { class: "muted" }, "Fix the patch to see the result."));
    else previewPane.append(h("p", { class: "muted" }, "The patch is applied to the context the engine kept."));
  };
  select.addEventListener("change", show);
  editor.onChange(show);

  return dialog(
    "Replay from a step",
    (close) => {
      const submit = button("Replay", { kind: "primary", iconName: "replay" });
      editor.onChange((state) => (submit.disabled = !state.ok || !steps.length));
      submit.addEventListener("click", async () => {
        submit.disabled = true;
        clear(problem);
        const patch = editor.value();
        try {
          const created = await api(`executions/${encodeURIComponent(execution.id)}/replay`, {
            method: "POST",
            body: { from_step: select.value, context_patch: Object.keys(patch).length ? patch : null },
          });
          const started = created.execution || created;
          notify(`Replay ${shortId(started.id)} started from ${select.value}`);
          close(started);
        } catch (error) {
          problem.append(errorBox(error));
          submit.disabled = false;
        }
      });
      queueMicrotask(show);
      return {
        body: steps.length
          ? [
              h("p", { class: "dialog-lead" }, "A new execution of ", h("strong", {}, `${execution.flow_id}@${execution.flow_version}`), " starts at the chosen step with the context it had before that step, patched. This execution stays as it is."),
              h("label", { class: "field inline" }, h("span", {}, "From step"), select),
              h(
                "div",
                { class: "replay-grid" },
                h("div", { class: "pane" }, h("div", { class: "pane-title" }, "Context before this step"), beforePane),
                h(
                  "div",
                  { class: "pane" },
                  h("div", { class: "pane-title" }, "Patch ", h("span", { class: "muted" }, "(JSON merge patch: objects merge, null removes a key)")),
                  editor.node,
                ),
                h("div", { class: "pane" }, h("div", { class: "pane-title" }, "The replay starts with"), previewPane),
              ),
              problem,
            ]
          : [h("p", {}, "This execution ran no step yet: there is nothing to replay from.")],
        actions: [button("Cancel", { kind: "ghost", onclick: () => close(null) }), submit],
      };
    },
    { wide: true },
  );
}
