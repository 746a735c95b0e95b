/**
 * A tool's result as a client would see it: each content block (text, image, audio, an embedded
 * resource, a link to one), the structured content, and `_meta`, with who answered and how long it
 * took. Images and audio are shown from their own data; nothing is parsed as HTML.
 */
import { badge, h, json, ms } from "./dom.js";

function sourceText(source) {
  if (source === "backend") return "the backend";
  if (source === "cache") return "the cache";
  if (source === "gateway") return "the gateway (it did not reach the tool)";
  if (source.startsWith("fallback")) return `a fallback (${source})`;
  return source;
}

/** The answer of `POST /console/api/call`. */
export function resultView(answer) {
  if (!answer.ok) {
    return h(
      "section",
      { class: "result result-error", "aria-label": "Result" },
      h("h2", {}, "Refused"),
      h(
        "p",
        { class: "result-meta" },
        badge("error"),
        ` in ${ms(answer.durationMs)} · request ${answer.requestId}`,
        answer.code ? ` · code ${answer.code}` : "",
      ),
      h("p", { role: "alert" }, answer.error),
    );
  }
  const result = answer.result;
  const failed = result.isError === true;
  return h(
    "section",
    { class: `result${failed ? " result-error" : ""}`, "aria-label": "Result" },
    h("h2", {}, failed ? "Result: error" : "Result"),
    h(
      "p",
      { class: "result-meta" },
      failed ? badge("isError", "error") : badge("ok"),
      " answered by ",
      h("strong", { class: "result-source", dataset: { source: answer.source } }, sourceText(answer.source)),
      ` in ${ms(answer.durationMs)} · request `,
      h("code", { class: "result-request" }, answer.requestId),
    ),
    h("ol", { class: "blocks" }, (result.content ?? []).map(block)),
    result.structuredContent !== undefined
      ? h("div", { class: "block" }, h("h3", {}, "Structured content"), json(result.structuredContent))
      : null,
    result._meta !== undefined
      ? h("details", { class: "block" }, h("summary", {}, "_meta"), json(result._meta))
      : null,
  );
}

function block(content) {
  switch (content.type) {
    case "text":
      return h(
        "li",
        { class: "block block-text" },
        h("h3", {}, "Text"),
        h("pre", { class: "text" }, content.text),
      );
    case "image":
      return h(
        "li",
        { class: "block block-image" },
        h("h3", {}, `Image (${content.mimeType})`),
        h("img", {
          src: `data:${content.mimeType};base64,${content.data}`,
          alt: `Image returned by the tool (${content.mimeType})`,
        }),
      );
    case "audio":
      return h(
        "li",
        { class: "block block-audio" },
        h("h3", {}, `Audio (${content.mimeType})`),
        h("audio", { controls: true, src: `data:${content.mimeType};base64,${content.data}` }),
      );
    case "resource": {
      const resource = content.resource ?? {};
      return h(
        "li",
        { class: "block block-resource" },
        h("h3", {}, "Embedded resource ", h("code", {}, resource.uri ?? "")),
        resource.mimeType ? h("p", { class: "hint" }, resource.mimeType) : null,
        typeof resource.text === "string"
          ? h("pre", { class: "text" }, resource.text)
          : h("p", {}, `Binary content, ${Math.round(((resource.blob ?? "").length * 3) / 4)} bytes`),
      );
    }
    case "resource_link":
      return h(
        "li",
        { class: "block block-link" },
        h("h3", {}, "Resource link"),
        h(
          "p",
          {},
          h("code", {}, content.uri),
          content.name ? ` — ${content.name}` : "",
          content.mimeType ? ` (${content.mimeType})` : "",
        ),
        content.description ? h("p", { class: "hint" }, content.description) : null,
      );
    default:
      return h("li", { class: "block" }, h("h3", {}, `Content of type ${content.type}`), json(content));
  }
}
