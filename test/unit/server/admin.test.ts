/** Who may administer a gateway over HTTP (`POST /admin/reload`): every combination of the rules. */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { test } from "node:test";
import { ANONYMOUS, type Principal } from "../../../src/core/types.ts";
import { silentLogger } from "../../../src/observability/logger.ts";
import { type AdminDeps, adminRefusal } from "../../../src/server/http/admin.ts";

const from = (remoteAddress: string) => ({ socket: { remoteAddress } }) as unknown as IncomingMessage;
const admin: Principal = { id: "ops", roles: ["admin"] };
const user: Principal = { id: "dev", roles: ["reader"] };
const deps = (authenticated: boolean, allowRemote = false): AdminDeps => ({
  options: { roles: ["admin"], allowRemote },
  authenticated,
  logger: silentLogger(),
  reload: undefined,
});

test("without auth: loopback may (IPv4, IPv6, IPv4-mapped), any other address may not", () => {
  for (const address of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
    assert.equal(adminRefusal(from(address), ANONYMOUS, deps(false)), undefined, address);
  }
  assert.match(String(adminRefusal(from("10.1.2.3"), ANONYMOUS, deps(false))), /loopback only/);
});

test("allowRemote without auth is still refused: other hosts need auth", () => {
  assert.match(String(adminRefusal(from("10.1.2.3"), ANONYMOUS, deps(false, true))), /needs auth/);
});

test("with auth: an admin role is needed, from loopback or, with allowRemote, from anywhere", () => {
  assert.equal(adminRefusal(from("127.0.0.1"), admin, deps(true)), undefined);
  assert.match(String(adminRefusal(from("127.0.0.1"), user, deps(true))), /none of the admin roles \(admin;/);
  assert.match(String(adminRefusal(from("10.1.2.3"), admin, deps(true))), /loopback only/);
  assert.equal(adminRefusal(from("10.1.2.3"), admin, deps(true, true)), undefined);
  assert.match(String(adminRefusal(from("10.1.2.3"), user, deps(true, true))), /none of the admin roles/);
});
