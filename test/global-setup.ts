/**
 * vitest globalSetup: runs in Node (not workerd), starts one fake Baseten on an ephemeral
 * port for the whole run and hands its URL to the tests through `inject("basetenUrl")`.
 * Tests isolate themselves by using their own management key (tenant), see test/helpers/fake.ts.
 */
import type { TestProject } from "vitest/node";
import { startFakeBaseten } from "../dev/fake-baseten.ts";
import { startOidcIssuer } from "./helpers/oidc-issuer.ts";

export default async function setup(project: TestProject) {
  const fake = await startFakeBaseten({ port: 0 });
  project.provide("basetenUrl", fake.url);
  // The loopback OIDC issuer for test/identity-*.test.ts (tenants per test file, like the fake).
  const issuer = await startOidcIssuer(0);
  project.provide("oidcIssuerUrl", issuer.url);
  // The soak's seeds and length (test/soak.test.ts): replay any seed by name.
  project.provide("soakSeeds", process.env.SOAK_SEEDS ?? "");
  project.provide("soakDays", process.env.SOAK_DAYS ?? "");
  return async () => {
    await fake.close();
    await issuer.close();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    basetenUrl: string;
    oidcIssuerUrl: string;
    soakSeeds: string;
    soakDays: string;
  }
}
