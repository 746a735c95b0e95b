/**
 * What the HTTP server's endpoints share with the other replicas of a shared store: the replica bus,
 * the records of 2025-era sessions, the key 2026-07-28 request states are signed with, and the relay
 * of requests only another replica can serve. Nothing of
 * this exists on a store that is not shared: one replica keeps everything in its own memory.
 */
import { randomBytes } from "node:crypto";
import type { Gateway } from "../../gateway/gateway.ts";
import { ReplicaBus } from "../../gateway/replica-bus.ts";
import type { Logger } from "../../observability/logger.ts";
import { RequestStateTokens, sharedRequestStateKey } from "../../protocol/request-state.ts";
import { ResilientStore } from "../../stores/index.ts";
import { ReplicaRelay } from "./replica-relay.ts";
import { SessionRecords } from "./session-record.ts";

export interface Replicas {
  readonly bus: ReplicaBus;
  readonly records: SessionRecords;
  readonly tokens: RequestStateTokens;
  /** Relays requests only another replica can serve (replica-relay.ts). */
  readonly relay: ReplicaRelay;
}

export function joinReplicas(gateway: Gateway, idleTimeoutMs: number, log: Logger): Replicas | undefined {
  const store = gateway.store;
  if (!store.shared) return undefined;
  const bus = new ReplicaBus(store, log);
  // Whatever is read or sent before the store's first connection would stay in this replica's memory
  // (fail-open): the shared key above all.
  const connected = store instanceof ResilientStore ? store.connect() : Promise.resolve();
  connected
    .then(() => bus.start())
    .then(() => log.info({ replica: bus.id }, "listening to the other replicas"))
    .catch((error: unknown) =>
      log.warn({ err: error }, "could not listen to the other replicas; requests they forward are lost"),
    );
  const key = connected
    .then(() => sharedRequestStateKey(store))
    .catch((error: unknown) => {
      log.warn(
        { err: error },
        "could not read the request-state key the replicas share; this replica's request states are its own",
      );
      return randomBytes(32);
    });
  const tokens = new RequestStateTokens(bus.id, key);
  return {
    bus,
    records: new SessionRecords(store, idleTimeoutMs),
    tokens,
    relay: new ReplicaRelay(bus, tokens, log),
  };
}
