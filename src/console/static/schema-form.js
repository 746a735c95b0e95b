/**
 * A form generated from a tool's input JSON Schema: text for strings, number inputs for numbers and
 * integers, a list of choices for enums, true/false for booleans, a list with "Add" and "Remove" for
 * arrays, a group for nested objects, and a JSON text area for what has no simpler form (unions,
 * references). `read()` turns the filled form into the call's arguments: an optional field left empty
 * is left out, as a client would.
 */
import { h, uid } from "./dom.js";

/** The form of a tool's `inputSchema`; `read()` returns its arguments or throws what is wrong. */
export function schemaForm(schema) {
  const root = objectFields(schema ?? { type: "object" }, "");
  return {
    element: h("div", { class: "schema-form" }, root.elements),
    read: () => root.read().value ?? {},
  };
}

function typeOf(schema) {
  if (Array.isArray(schema.enum) || schema.const !== undefined) return "enum";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type) return type;
  if (schema.properties) return "object";
  if (schema.items) return "array";
  return "json";
}

function labelOf(name, schema) {
  return schema.title ?? name;
}

/** The fields of an object's properties, in the schema's order; `read` gives the object. */
function objectFields(schema, path) {
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const fields = Object.entries(schema.properties ?? {}).map(([name, property]) =>
    field(
      property ?? {},
      path ? `${path}.${name}` : name,
      labelOf(name, property ?? {}),
      required.has(name),
      name,
    ),
  );
  if (
    fields.length === 0 &&
    schema.additionalProperties !== undefined &&
    schema.additionalProperties !== false
  ) {
    // A free-form object: its properties cannot be listed, only written.
    const free = jsonField(schema, path || "arguments", path || "arguments", false);
    return { elements: [free.element], read: free.read };
  }
  return {
    elements: fields.map((f) => f.element),
    read: () => {
      const value = {};
      let present = false;
      for (const f of fields) {
        const read = f.read();
        if (!read.present) continue;
        value[f.key] = read.value;
        present = true;
      }
      return { present, value };
    },
  };
}

function field(schema, path, label, required, key) {
  const made = fieldOf(schema, path, label, required);
  return { ...made, key };
}

function fieldOf(schema, path, label, required) {
  switch (typeOf(schema)) {
    case "string":
      return textField(schema, path, label, required);
    case "number":
    case "integer":
      return numberField(schema, path, label, required);
    case "boolean":
      return booleanField(schema, path, label, required);
    case "enum":
      return enumField(schema, path, label, required);
    case "object":
      return objectField(schema, path, label, required);
    case "array":
      return arrayField(schema, path, label, required);
    default:
      return jsonField(schema, path, label, required);
  }
}

/** A label, the control, and the schema's description tied to it. */
function wrap(id, label, required, control, schema) {
  const hintId = schema.description ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label, required ? h("span", { class: "required" }, " (required)") : null),
    control,
    hintId ? h("p", { class: "hint", id: hintId }, schema.description) : null,
  );
}

function textField(schema, path, label, required) {
  const id = uid("arg");
  const long = (schema.maxLength ?? 0) > 200 || schema.format === "textarea";
  const input = long
    ? h("textarea", { id, name: path, rows: 3, required })
    : h("input", { id, name: path, type: "text", required, autocomplete: "off" });
  if (typeof schema.default === "string") input.value = schema.default;
  return {
    element: wrap(id, label, required, input, schema),
    read: () => ({ present: required || input.value !== "", value: input.value }),
  };
}

function numberField(schema, path, label, required) {
  const id = uid("arg");
  const integer = typeOf(schema) === "integer";
  const input = h("input", {
    id,
    name: path,
    type: "number",
    step: integer ? "1" : "any",
    min: schema.minimum,
    max: schema.maximum,
    required,
    inputmode: integer ? "numeric" : "decimal",
  });
  if (typeof schema.default === "number") input.value = String(schema.default);
  return {
    element: wrap(id, label, required, input, schema),
    read: () => {
      if (input.value === "") {
        if (required) throw new Error(`${label} is required.`);
        return { present: false };
      }
      const value = Number(input.value);
      if (!Number.isFinite(value)) throw new Error(`${label} must be a number.`);
      if (integer && !Number.isInteger(value)) throw new Error(`${label} must be a whole number.`);
      return { present: true, value };
    },
  };
}

function booleanField(schema, path, label, required) {
  const id = uid("arg");
  if (required) {
    const box = h("input", { id, name: path, type: "checkbox", checked: schema.default === true });
    const element = h(
      "div",
      { class: "field field-check" },
      box,
      h("label", { for: id }, label, h("span", { class: "required" }, " (required)")),
      schema.description ? h("p", { class: "hint" }, schema.description) : null,
    );
    return { element, read: () => ({ present: true, value: box.checked }) };
  }
  // Optional: "not set" is a third answer, distinct from false.
  const select = h(
    "select",
    { id, name: path },
    h("option", { value: "" }, "— not set —"),
    h("option", { value: "true" }, "true"),
    h("option", { value: "false" }, "false"),
  );
  if (typeof schema.default === "boolean") select.value = String(schema.default);
  return {
    element: wrap(id, label, false, select, schema),
    read: () =>
      select.value === "" ? { present: false } : { present: true, value: select.value === "true" },
  };
}

function enumField(schema, path, label, required) {
  const id = uid("arg");
  const choices = Array.isArray(schema.enum) ? schema.enum : [schema.const];
  const select = h(
    "select",
    { id, name: path, required },
    required ? null : h("option", { value: "" }, "— not set —"),
    choices.map((choice, index) =>
      h("option", { value: String(index) }, JSON.stringify(choice).replace(/^"|"$/g, "")),
    ),
  );
  const preset = choices.indexOf(schema.default);
  if (preset >= 0) select.value = String(preset);
  return {
    element: wrap(id, label, required, select, schema),
    read: () =>
      select.value === "" ? { present: false } : { present: true, value: choices[Number(select.value)] },
  };
}

function objectField(schema, path, label, required) {
  const inner = objectFields(schema, path);
  const element = h(
    "fieldset",
    { class: "group" },
    h("legend", {}, label, required ? h("span", { class: "required" }, " (required)") : null),
    schema.description ? h("p", { class: "hint" }, schema.description) : null,
    inner.elements,
  );
  return {
    element,
    read: () => {
      const read = inner.read();
      return { present: required || read.present, value: read.value };
    },
  };
}

function arrayField(schema, path, label, required) {
  const items = [];
  const list = h("ol", { class: "array-items" });
  const itemSchema = typeof schema.items === "object" && schema.items !== null ? schema.items : {};
  const legendId = uid("legend");
  const add = (focus) => {
    const index = items.length;
    const made = fieldOf(itemSchema, `${path}[${index}]`, `${label} item ${index + 1}`, true);
    const entry = { made, element: null };
    const remove = h(
      "button",
      {
        type: "button",
        class: "secondary small",
        onclick: () => {
          items.splice(items.indexOf(entry), 1);
          entry.element.remove();
        },
      },
      `Remove ${label} item`,
    );
    entry.element = h("li", {}, made.element, remove);
    items.push(entry);
    list.append(entry.element);
    if (focus) entry.element.querySelector("input, select, textarea")?.focus();
  };
  if (Array.isArray(schema.default)) for (const _ of schema.default) add(false);
  const element = h(
    "fieldset",
    { class: "group", "aria-labelledby": legendId },
    h("legend", { id: legendId }, label, required ? h("span", { class: "required" }, " (required)") : null),
    schema.description ? h("p", { class: "hint" }, schema.description) : null,
    list,
    h("button", { type: "button", class: "secondary small", onclick: () => add(true) }, `Add ${label} item`),
  );
  return {
    element,
    read: () => {
      const value = items.map((entry) => entry.made.read()).map((read) => (read.present ? read.value : null));
      return { present: required || value.length > 0, value };
    },
  };
}

function jsonField(schema, path, label, required) {
  const id = uid("arg");
  const area = h("textarea", { id, name: path, rows: 4, class: "code", spellcheck: "false", required });
  if (schema.default !== undefined) area.value = JSON.stringify(schema.default, null, 2);
  const hint = h("span", { class: "hint-inline" }, " (JSON)");
  return {
    element: wrap(id, [label, hint], required, area, schema),
    read: () => {
      if (area.value.trim() === "") {
        if (required) throw new Error(`${label} is required (JSON).`);
        return { present: false };
      }
      try {
        return { present: true, value: JSON.parse(area.value) };
      } catch {
        throw new Error(`${label} is not valid JSON.`);
      }
    },
  };
}
