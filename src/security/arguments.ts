/**
 * Input guards for tool arguments: size, string length and nesting limits (cheap, always safe to
 * run first), then validation against the tool's `inputSchema` with Ajv.
 *
 * The limits walk the arguments with an explicit stack and stop descending at `maxDepth`, so a
 * 100 000-level input is judged without recursion; only once the depth is known to be bounded are the
 * arguments serialised to measure their size. Schema validation, which recurses, comes after.
 *
 * A tool schema that Ajv cannot compile does not block the tool: the backend remains the judge of its
 * own arguments, as it would be without the gateway. The compile error is kept for the caller to log.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { InvalidArguments } from "../core/errors.ts";
import type { Policy } from "../core/types.ts";
import type { ToolBinding } from "../policies/types.ts";
import type { ArgumentLimits } from "./config.ts";

// ajv-formats is CommonJS: under NodeNext its default import is `module.exports`, typed as the module.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

/** How many problems a message lists before saying how many more there are. */
const MAX_LISTED = 10;
/** Path segments shown for a too-deep value, whose full path could be 100 000 segments long. */
const MAX_PATH_SEGMENTS = 8;

export interface ArgumentProblem {
  /** JSON pointer to the value ("" for the arguments themselves). */
  readonly path: string;
  readonly message: string;
}

export type ValidationResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly errors: readonly ArgumentProblem[] };

interface Frame {
  readonly value: unknown;
  /** Objects and arrays count; the arguments object itself is level 1. */
  readonly depth: number;
  readonly parent: Frame | undefined;
  readonly key: string | number | undefined;
}

function pointerSegment(key: string | number): string {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

/** The JSON pointer of a frame, cut short for deep values. */
function pathOf(frame: Frame, extra?: string): string {
  const segments: string[] = extra === undefined ? [] : [pointerSegment(extra)];
  for (let at: Frame | undefined = frame; at?.parent !== undefined; at = at.parent) {
    segments.push(pointerSegment(at.key as string | number));
  }
  segments.reverse();
  if (segments.length > MAX_PATH_SEGMENTS) {
    return `/${segments.slice(0, MAX_PATH_SEGMENTS).join("/")}/…`;
  }
  return segments.length === 0 ? "" : `/${segments.join("/")}`;
}

function where(path: string): string {
  return path === "" ? "the arguments" : path;
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** What is wrong with the arguments against the limits; empty when nothing is. */
export function findLimitProblems(args: unknown, limits: ArgumentLimits): ArgumentProblem[] {
  const problems: ArgumentProblem[] = [];
  let tooDeep: Frame | undefined;
  let longString: ArgumentProblem | undefined;
  const stack: Frame[] = [{ value: args, depth: 1, parent: undefined, key: undefined }];
  while (stack.length > 0 && (tooDeep === undefined || longString === undefined)) {
    const frame = stack.pop() as Frame;
    const { value } = frame;
    if (typeof value === "string") {
      if (value.length > limits.maxStringLength && longString === undefined) {
        const path = pathOf(frame);
        longString = {
          path,
          message: `${where(path)} is ${count(value.length)} characters long (max ${count(limits.maxStringLength)})`,
        };
      }
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    if (frame.depth > limits.maxDepth) {
      // Not descending further is what bounds the walk on adversarially deep input.
      tooDeep ??= frame;
      continue;
    }
    const depth = frame.depth + 1;
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--)
        stack.push({ value: value[i], depth, parent: frame, key: i });
      continue;
    }
    const keys = Object.keys(value);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      if (key.length > limits.maxStringLength && longString === undefined) {
        const path = pathOf(frame);
        longString = {
          path,
          message: `a property name in ${where(path)} is ${count(key.length)} characters long (max ${count(limits.maxStringLength)})`,
        };
      }
      stack.push({ value: (value as Record<string, unknown>)[key], depth, parent: frame, key });
    }
  }
  if (tooDeep) {
    const path = pathOf(tooDeep);
    problems.push({ path, message: `${where(path)} nests deeper than ${count(limits.maxDepth)} levels` });
  }
  if (longString) problems.push(longString);
  if (!tooDeep) {
    let json: string | undefined;
    try {
      json = JSON.stringify(args);
    } catch (error) {
      problems.push({ path: "", message: `the arguments are not plain JSON (${(error as Error).message})` });
    }
    const bytes = json === undefined ? 0 : Buffer.byteLength(json, "utf8");
    if (bytes > limits.maxBytes) {
      problems.unshift({
        path: "",
        message: `the arguments are ${count(bytes)} bytes as JSON (max ${count(limits.maxBytes)})`,
      });
    }
  }
  return problems;
}

/** Throws InvalidArguments naming every limit the arguments break. */
export function checkArgumentLimits(args: unknown, limits: ArgumentLimits, exposedName?: string): void {
  const problems = findLimitProblems(args, limits);
  if (problems.length === 0) return;
  const subject = exposedName === undefined ? "Arguments" : `Arguments for '${exposedName}'`;
  throw new InvalidArguments(
    `${subject} exceed the gateway's limits: ${problems.map((problem) => problem.message).join("; ")}. ` +
      "Send smaller or flatter arguments.",
    { ...(exposedName === undefined ? {} : { tool: exposedName }), errors: problems },
  );
}

interface Compiled {
  readonly validate?: ValidateFunction;
  readonly error?: string;
}

export interface ArgumentValidator {
  /** Checks `args` against a tool's `inputSchema`. A schema that does not compile accepts everything. */
  validate(schema: object, args: unknown): ValidationResult;
  /** Why the schema could not be compiled, or undefined when it compiled (or was never seen). */
  compileError(schema: object): string | undefined;
  /** Throws InvalidArguments, naming the tool and each problem, when `args` do not match. */
  assertValid(exposedName: string, schema: object, args: unknown): void;
}

export interface ArgumentValidatorOptions {
  /** Called once for each schema object that fails to compile, for the caller to log. */
  readonly onCompileError?: (schema: object, message: string) => void;
}

/** Which Ajv to try first: draft-07 for a schema that says it is draft-04 to -07, else 2020-12 (MCP's default). */
function prefersDraft07(schema: object): boolean {
  const declared = (schema as { $schema?: unknown }).$schema;
  return typeof declared === "string" && /draft-0[4-7]/.test(declared);
}

function isMetaSchemaId(id: unknown): boolean {
  return typeof id === "string" && /^https?:\/\/json-schema\.org\//.test(id);
}

function forget(ajv: Ajv, schema: Record<string, unknown>): void {
  if (isMetaSchemaId(schema.$id)) return;
  try {
    ajv.removeSchema(schema);
  } catch {
    // An $id Ajv cannot normalise was never registered under it either.
  }
}

function escapeProperty(name: unknown): string {
  return pointerSegment(String(name));
}

/** An Ajv error as a path and a message a person (or a model) can act on. */
function problemOf(error: ErrorObject): ArgumentProblem {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case "required":
      return {
        path: `${error.instancePath}/${escapeProperty(params.missingProperty)}`,
        message: "is required",
      };
    case "additionalProperties":
    case "unevaluatedProperties":
      return {
        path: `${error.instancePath}/${escapeProperty(params.additionalProperty ?? params.unevaluatedProperty)}`,
        message: "is not allowed (unknown property)",
      };
    case "enum":
      return {
        path: error.instancePath,
        message: `must be one of ${(params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(", ")}`,
      };
    case "const":
      return { path: error.instancePath, message: `must be ${JSON.stringify(params.allowedValue)}` };
    default:
      return { path: error.instancePath, message: error.message ?? `fails "${error.keyword}"` };
  }
}

/** Ajv's pointer for a deep value, cut short the way the limit checks cut theirs. */
function shortPath(pointer: string): string {
  const segments = pointer.split("/");
  return segments.length > MAX_PATH_SEGMENTS + 1
    ? `${segments.slice(0, MAX_PATH_SEGMENTS + 1).join("/")}/…`
    : pointer;
}

function describeProblem(problem: ArgumentProblem): string {
  return problem.path === "" ? `the arguments ${problem.message}` : `${problem.path} ${problem.message}`;
}

export function createArgumentValidator(options: ArgumentValidatorOptions = {}): ArgumentValidator {
  const common = { allErrors: true, strict: false } as const;
  const draft07 = addFormats(new Ajv(common));
  const draft2020 = addFormats(new Ajv2020(common) as unknown as Ajv);
  const compiled = new WeakMap<object, Compiled>();

  function compile(schema: object): Compiled {
    // `$schema` only picks the Ajv; each Ajv then reads the schema as its own draft, so that a schema
    // naming a draft it does not know (draft-04, 2019-09) is still checked as best it can be.
    const { $schema: _declared, ...body } = schema as Record<string, unknown>;
    const order = prefersDraft07(schema) ? [draft07, draft2020] : [draft2020, draft07];
    const failures: string[] = [];
    for (const ajv of order) {
      try {
        return { validate: ajv.compile(body) };
      } catch (error) {
        failures.push((error as Error).message);
      } finally {
        // Ajv registers every compiled schema (by object and by $id) for the life of the instance.
        // Dropping it once compiled keeps tool lists that are re-read for the life of the process
        // from piling up, and lets tools whose schemas share an $id each compile; the validate
        // function stands alone. Registration is still needed during compile: it is how `$ref: "#"`
        // finds the root.
        forget(ajv, body);
      }
    }
    return { error: failures[0] ?? "unknown error" };
  }

  function compiledFor(schema: object): Compiled {
    let entry = compiled.get(schema);
    if (entry === undefined) {
      entry = compile(schema);
      compiled.set(schema, entry);
      if (entry.error !== undefined) options.onCompileError?.(schema, entry.error);
    }
    return entry;
  }

  function validate(schema: object, args: unknown): ValidationResult {
    if (schema === null || typeof schema !== "object") return { ok: true };
    const { validate: check } = compiledFor(schema);
    if (!check) return { ok: true };
    let valid: boolean;
    try {
      valid = check(args) as boolean;
    } catch {
      // A recursive schema walks recursive data recursively: past the stack limit, say so.
      return {
        ok: false,
        errors: [
          { path: "", message: "could not be checked against the tool's schema: they nest too deeply" },
        ],
      };
    }
    if (valid) return { ok: true };
    const seen = new Set<string>();
    const errors: ArgumentProblem[] = [];
    for (const error of check.errors ?? []) {
      const raw = problemOf(error);
      const problem = { path: shortPath(raw.path), message: raw.message };
      const key = `${problem.path}\u0000${problem.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      errors.push(problem);
    }
    return { ok: false, errors };
  }

  return {
    validate,
    compileError: (schema) => compiled.get(schema)?.error,
    assertValid(exposedName, schema, args) {
      const result = validate(schema, args);
      if (result.ok) return;
      const listed = result.errors.slice(0, MAX_LISTED).map(describeProblem);
      const more = result.errors.length - listed.length;
      throw new InvalidArguments(
        `Invalid arguments for '${exposedName}': ${listed.join("; ")}${more > 0 ? ` (and ${more} more)` : ""}. ` +
          "Fix the arguments and call again.",
        { tool: exposedName, errors: result.errors },
      );
    },
  };
}

export interface ArgumentsPolicyOptions {
  /** Size, string length and depth limits; checked first. */
  readonly limits?: ArgumentLimits;
  /** Validates against the tool's `inputSchema` when given. */
  readonly validator?: ArgumentValidator;
}

/** Input validation as a policy in a tool's chain: limits first, then the tool's schema. */
export function argumentsPolicy(options: ArgumentsPolicyOptions, binding: ToolBinding): Policy {
  const { limits, validator } = options;
  const schema = binding.tool.inputSchema as object | undefined;
  return (next) => async (call, ctx) => {
    if (limits) checkArgumentLimits(call.args, limits, binding.exposedName);
    if (validator && schema) validator.assertValid(binding.exposedName, schema, call.args);
    return next(call, ctx);
  };
}
