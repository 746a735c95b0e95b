/**
 * The skills extension (`io.modelcontextprotocol/skills`) through the gateway, read with the SDK's own
 * `SkillsClient` (which checks every entry and file): the gateway declares the extension when a server
 * behind it offers skills, lists and gets them, lists their directories, and the skill files are read
 * through it with their digests intact. Both eras of the client, and both eras of the backend
 * connection (the conformance fixture serves one skill, `conformance-greeting`).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { SkillsClient } from "@modelcontextprotocol/client/ext/skills";
import { ROOT, type RunningGateway, startHttpGateway } from "../support/gateway-process.ts";

const CONFIGS = {
  "2026-07-28": join(ROOT, "test/fixtures/conformance.yaml"),
  "2025-era": join(ROOT, "test/fixtures/conformance-legacy.yaml"),
} as const;
type BackendEra = keyof typeof CONFIGS;

const SKILL = "skill://conformance-greeting/SKILL.md";

const gateways = new Map<BackendEra, RunningGateway>();
before(async () => {
  await Promise.all(
    (Object.keys(CONFIGS) as BackendEra[]).map(async (era) => {
      gateways.set(era, await startHttpGateway(CONFIGS[era]));
    }),
  );
});
after(async () => {
  await Promise.all([...gateways.values()].map((g) => g.stop()));
});

for (const backend of Object.keys(CONFIGS) as BackendEra[]) {
  for (const client of ["2026-07-28", "2025-11-25"] as const) {
    describe(`skills, ${client} client, ${backend} backend`, () => {
      test("declared, listed, got, read and verified, with the skill's directories", async () => {
        const gateway = gateways.get(backend);
        assert.ok(gateway, "the gateway started");
        const mcp = new ClientV2({ name: "skills-e2e", version: "1" }, {
          versionNegotiation: { mode: client === "2026-07-28" ? { pin: "2026-07-28" } : "legacy" },
        } as never);
        await mcp.connect(new HttpV2(new URL(gateway.url)));
        try {
          const skills = new SkillsClient(mcp);
          assert.ok(skills.supported, "the gateway declares the skills extension");
          assert.ok(skills.directoryRead, "and directory reads");

          const listing = await skills.list();
          assert.deepEqual(
            listing.skills.map((s) => s.uri),
            [SKILL],
          );
          if (client === "2026-07-28") {
            assert.equal(typeof listing.ttlMs, "number");
            assert.ok(listing.cacheScope === "private" || listing.cacheScope === "public");
          }
          const [entry] = listing.skills;
          assert.ok(entry);
          assert.deepEqual((await skills.get(SKILL)).skill, entry);
          await assert.rejects(skills.get("skill://no-such-skill/SKILL.md"), (error: unknown) => {
            assert.equal((error as { code?: number }).code, -32602, String(error));
            return true;
          });

          // Read through the gateway's resources/read, and checked against the entry's size and digest.
          const manifest = await skills.read(entry);
          assert.equal(manifest.verified, true);
          assert.equal(manifest.frontmatter?.name, "conformance-greeting");
          const guide = await skills.read(entry, "references/GUIDE.md");
          assert.match(guide.text ?? "", /Keep it short and friendly/);

          const root = await skills.readDirectory("skill://conformance-greeting");
          assert.deepEqual(root.resources.map((r) => [r.uri, r.mimeType]).sort(), [
            ["skill://conformance-greeting/SKILL.md", "text/markdown"],
            ["skill://conformance-greeting/references", "inode/directory"],
          ]);
          const references = await skills.readDirectory("skill://conformance-greeting/references");
          assert.deepEqual(
            references.resources.map((r) => r.uri),
            ["skill://conformance-greeting/references/GUIDE.md"],
          );
        } finally {
          await mcp.close();
        }
      });
    });
  }
}
