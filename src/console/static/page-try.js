/**
 * Try a tool: pick one of the tools the signed-in principal may call, fill in the form generated from
 * its input schema, and call it through the gateway as that principal. The result shows as a client
 * would see it, with its timing and who answered.
 */
import { h, heading, notice } from "./dom.js";
import { resultView } from "./result-view.js";
import { schemaForm } from "./schema-form.js";

export function tryPage(ctx) {
  let tools = [];
  let form;
  const picker = h("select", { id: "try-tool", name: "tool" });
  const description = h("p", { class: "hint", id: "try-description" });
  const fields = h("div", { id: "try-fields" });
  const problem = h("div", { "aria-live": "assertive" });
  const result = h("div", { id: "try-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "try-call" }, "Call");
  const element = h(
    "div",
    {},
    heading("Try a tool"),
    h(
      "p",
      {},
      `Calls go through the gateway's whole chain as ${ctx.state.principal?.id ?? "you"}, and are audited like any other.`,
    ),
    h(
      "form",
      {
        id: "try-form",
        novalidate: true,
        onsubmit: (event) => {
          event.preventDefault();
          call();
        },
      },
      h("div", { class: "field" }, h("label", { for: "try-tool" }, "Tool"), picker, description),
      fields,
      problem,
      submit,
    ),
    result,
  );

  const choose = () => {
    const tool = tools.find((t) => t.name === picker.value);
    description.textContent = tool?.description ?? "";
    form = schemaForm(tool?.inputSchema);
    fields.replaceChildren(form.element);
    problem.replaceChildren();
  };

  const call = async () => {
    problem.replaceChildren();
    let args;
    try {
      args = form.read();
    } catch (error) {
      problem.replaceChildren(notice(error.message, "error"));
      return;
    }
    submit.disabled = true;
    result.replaceChildren(h("p", { class: "hint" }, `Calling ${picker.value}…`));
    try {
      const answer = await ctx.postJson("call", { tool: picker.value, arguments: args });
      result.replaceChildren(resultView(answer));
    } catch (error) {
      result.replaceChildren(notice(error.message, "error"));
    } finally {
      submit.disabled = false;
    }
  };

  const load = async () => {
    try {
      const answer = await ctx.getJson("callable");
      const selected = picker.value;
      tools = [...answer.tools].sort((a, b) => a.name.localeCompare(b.name));
      picker.replaceChildren(...tools.map((tool) => h("option", { value: tool.name }, tool.name)));
      if (tools.length === 0) {
        fields.replaceChildren(notice("No tool is available to you right now.", "warning"));
        submit.disabled = true;
        return;
      }
      submit.disabled = false;
      const wanted = new URLSearchParams(location.hash.split("?")[1] ?? "").get("tool") ?? selected;
      if (tools.some((t) => t.name === wanted)) picker.value = wanted;
      if (picker.value !== selected || !form) choose();
    } catch (error) {
      fields.replaceChildren(notice(error.message, "error"));
    }
  };

  picker.addEventListener("change", choose);
  load();
  return {
    element,
    update: (kind) => {
      if (kind === "catalog") load();
    },
  };
}
