/**
 * The scenarios of the newest conformance suite that fail through the gateway while the fixture alone
 * passes them, each with the reason. scripts/conformance-next.ts reports them as known failures instead
 * of failing the run; README ("Conformance") and docs/conformance.md list the same, and a known failure
 * that starts passing is reported so its entry can be removed.
 *
 * Two kinds, never mixed up:
 * - `extension`: a protocol extension the gateway does not carry yet (tasks is a later issue);
 * - `gap`: a gateway behaviour that is wrong today; the reason names the file and what the scenario
 *   expects, so it can be fixed there.
 */

export type Wire = "2025-11-25" | "2026-07-28" | "extension";
export type GatewayTarget = "gateway" | "gateway-legacy";

export interface KnownFailure {
  readonly scenario: string;
  readonly wire: Wire;
  /** The gateway targets it fails on: the 2026-07-28 backend connection, the 2025 one, or both. */
  readonly targets: readonly GatewayTarget[];
  readonly kind: "extension" | "gap";
  readonly reason: string;
}

const BOTH: readonly GatewayTarget[] = ["gateway", "gateway-legacy"];

const TASKS =
  "the gateway does not carry the tasks extension yet: its server/discover declares no " +
  "io.modelcontextprotocol/tasks, tasks/get, tasks/update and tasks/cancel answer -32601, and it does not " +
  "declare the extension to backends, so task-supporting tools run synchronously and return no CreateTaskResult";

const SKILLS =
  "the gateway does not carry the skills extension: it declares no io.modelcontextprotocol/skills and does " +
  "not route skills/list, skills/get or resources/directory/read, so every check is skipped";

const extension = (scenario: string, reason: string): KnownFailure => ({
  scenario,
  wire: "extension",
  targets: BOTH,
  kind: "extension",
  reason,
});

export const KNOWN_GATEWAY_FAILURES: readonly KnownFailure[] = [
  extension("tasks-lifecycle", TASKS),
  extension("tasks-capability-negotiation", TASKS),
  extension("tasks-wire-fields", TASKS),
  extension("tasks-request-state-removal", TASKS),
  extension("tasks-mrtr-input", TASKS),
  extension("tasks-request-headers", TASKS),
  extension("tasks-dispatch-and-envelope", TASKS),
  extension("tasks-mrtr-composition", TASKS),
  extension("sep-2640-skills-directory", SKILLS),
  extension("sep-2640-skills-enumeration", SKILLS),
  extension("sep-2640-skills-manifest", SKILLS),
  {
    scenario: "server-stateless",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "a question the calling client cannot answer is refused with -32600 (src/protocol/rounds.ts, " +
      "assertCanAsk) instead of -32021 MissingRequiredClientCapability with data.requiredCapabilities " +
      "(e.g. { sampling: {} }) and HTTP 400; with a 2025 backend the refusal reaches the backend, whose " +
      "tool turns it into an isError result, so the client sees a result instead of -32021",
  },
  {
    scenario: "http-custom-header-server-validation",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "Mcp-Param-* headers are not checked against the tool's x-mcp-header arguments: the SDK's " +
      "createMcpHandler checks them only when the factory returns an McpServer, and the gateway's factory " +
      "(src/protocol/sdk-server.ts) returns a low-level Server; a missing, mismatched or badly Base64-encoded " +
      "header must be refused with HTTP 400 and -32020 before the call is served",
  },
  {
    scenario: "input-required-result-basic-elicitation",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "the gateway renames the server's input request keys (user_name becomes elicitation-1, " +
      "src/protocol/rounds.ts #ask): a 2026-07-28 backend's input_required result is fulfilled by the " +
      "gateway's SDK client one request at a time (src/backends/mcp/client.ts), which hides its keys; a " +
      "2025 backend's questions have no keys at all",
  },
  {
    scenario: "input-required-result-basic-list-roots",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "roots/list is not carried: the gateway's backend client declares no roots capability and answers no " +
      "roots/list (src/backends/mcp/client.ts), and input_required rounds carry only sampling and " +
      "elicitation (src/protocol/rounds.ts)",
  },
  {
    scenario: "input-required-result-multiple-input-requests",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "one of its three input requests is roots/list, which the gateway does not carry (see basic-list-roots)",
  },
  {
    scenario: "input-required-result-multi-round",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "each round of one call returns the same requestState (the suspended call's token, minted once in " +
      "src/protocol/rounds.ts); the suite expects a new requestState for every round",
  },
  {
    scenario: "input-required-result-non-tool-request",
    wire: "2026-07-28",
    targets: BOTH,
    kind: "gap",
    reason:
      "input_required is carried for tools/call only: a backend that asks for input while answering " +
      "prompts/get is refused (src/backends/mcp/client.ts, askCaller: 'not asked during a tool call')",
  },
  {
    scenario: "input-required-result-capability-check",
    wire: "2026-07-28",
    targets: ["gateway"],
    kind: "gap",
    reason:
      "the gateway declares sampling and elicitation to a 2026-07-28 backend whatever the calling client " +
      "declared (src/backends/mcp/client.ts), so the backend asks for elicitation, which the gateway then " +
      "refuses; it should pass the client's own capabilities in the per-request envelope",
  },
];

export function knownFailure(scenario: string, wire: Wire, target: string): KnownFailure | undefined {
  return KNOWN_GATEWAY_FAILURES.find(
    (k) => k.scenario === scenario && k.wire === wire && (k.targets as readonly string[]).includes(target),
  );
}
