/**
 * Tools that more than one fixture MCP server offers, written once so that the stdio fixture and the
 * HTTP fixture answer the same way and tests can read either one's answer alike.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";

/** `meta`: returns the request's `_meta` as it arrived, to see the trace context a backend was handed. */
export function registerMetaTool(server: McpServer): void {
  server.registerTool(
    "meta",
    { description: "Returns the request's _meta as it arrived (trace context, …)" },
    async (extra) => ({
      content: [{ type: "text" as const, text: JSON.stringify(extra._meta ?? {}) }],
      structuredContent: { meta: extra._meta ?? {} },
    }),
  );
}
