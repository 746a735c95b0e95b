/**
 * The HTTP backend's tools: the generic `fetch` tool, scoped by config, and one tool per configured
 * endpoint, whose arguments are checked against the JSON Schema the endpoint declares.
 */
import { Ajv } from "ajv";
import { z } from "zod";
import type { Tool } from "../../core/types.ts";
import { toolSchema } from "../base.ts";
import type { HttpBackendConfig, HttpEndpointConfig, HttpMethod } from "./config.ts";

const queryValue = z.union([z.string(), z.number(), z.boolean()]);

export interface FetchArgs {
  method: HttpMethod;
  url?: string | undefined;
  path?: string | undefined;
  headers?: Record<string, string> | undefined;
  query?: Record<string, string | number | boolean | (string | number | boolean)[]> | undefined;
  body?: unknown;
}

export function fetchArgsSchema(methods: readonly HttpMethod[]): z.ZodType<FetchArgs> {
  return z
    .strictObject({
      method: z
        .enum(methods as [HttpMethod, ...HttpMethod[]])
        .default(methods.includes("GET") ? "GET" : (methods[0] as HttpMethod))
        .describe("The HTTP method."),
      url: z
        .string()
        .optional()
        .describe("An absolute URL on an allowed host, e.g. https://api.example.com/items."),
      path: z.string().optional().describe("A path under the base URL, e.g. /items/42 (instead of url)."),
      headers: z.record(z.string(), z.string()).optional().describe("Request headers."),
      query: z
        .record(z.string(), z.union([queryValue, z.array(queryValue)]))
        .optional()
        .describe("Query parameters, added to those in the URL; arrays repeat the key."),
      body: z
        .unknown()
        .optional()
        .describe("The request body: a string is sent as is, any other JSON value as application/json."),
    })
    .refine((a) => (a.url === undefined) !== (a.path === undefined), {
      error: 'pass exactly one of "url" and "path"',
    });
}

const SAFE_METHODS: readonly string[] = ["GET", "HEAD", "OPTIONS"];

export function fetchTool(
  name: string,
  config: HttpBackendConfig,
  base: URL | undefined,
  args: z.ZodType<FetchArgs>,
): Tool {
  const scope = [
    base ? `paths under ${base.href} (argument "path")` : undefined,
    config.allowHosts.length === 0
      ? undefined
      : `absolute URLs on ${config.allowHosts.includes("*") ? "any public host" : config.allowHosts.join(", ")} (argument "url")`,
  ]
    .filter(Boolean)
    .join("; and ");
  const writes = config.methods.some((m) => !SAFE_METHODS.includes(m));
  return {
    name: "fetch",
    description:
      `Sends an HTTP request and returns the status and body (JSON bodies also as structured content). ` +
      `Reaches ${scope}${config.allowHttp ? "" : "; https only"}. Bodies over ${config.maxResponseBytes} bytes are refused.`,
    inputSchema: toolSchema(args),
    annotations: {
      title: `HTTP request (${name})`,
      readOnlyHint: !writes,
      destructiveHint: writes,
      idempotentHint: !writes,
      openWorldHint: true,
    },
  };
}

export function endpointTool(endpoint: HttpEndpointConfig): Tool {
  const writes = !SAFE_METHODS.includes(endpoint.method);
  return {
    name: endpoint.name,
    description: endpoint.description ?? `${endpoint.method} ${endpoint.path}`,
    inputSchema: { type: "object", ...endpoint.inputSchema } as Tool["inputSchema"],
    annotations: {
      readOnlyHint: !writes,
      destructiveHint: writes,
      idempotentHint: !writes || endpoint.method === "PUT" || endpoint.method === "DELETE",
      openWorldHint: true,
    },
  };
}

let sharedAjv: Ajv | undefined;
/** One validator instance for every endpoint: compiling is costly, validating is not. */
function ajv(): Ajv {
  sharedAjv ??= new Ajv({ allErrors: true, strict: false });
  return sharedAjv;
}

/**
 * An endpoint's arguments, checked against the JSON Schema it declares (compiled once), as a zod
 * schema, so that they are checked and reported like every other tool's.
 */
export function endpointArgs(endpoint: HttpEndpointConfig): z.ZodType<Record<string, unknown>> {
  const validate = ajv().compile(endpoint.inputSchema);
  return z.custom<Record<string, unknown>>().superRefine((value, ctx) => {
    if (validate(value)) return;
    const errors = validate.errors ?? [];
    if (errors.length === 0) ctx.addIssue({ code: "custom", message: "do not fit the tool's inputSchema" });
    for (const error of errors) {
      ctx.addIssue({
        code: "custom",
        message: error.message ?? "is invalid",
        path: error.instancePath.split("/").slice(1),
      });
    }
  });
}
