/** Builds the command line once (dist/cli/baseten-key-rotator.mjs) for the Node-side CLI tests. */
import { execFileSync } from "node:child_process";
import path from "node:path";

export default function setup() {
  const root = path.resolve(import.meta.dirname, "..");
  execFileSync(process.execPath, [path.join(root, "dev", "build-cli.ts"), "--quiet"], { cwd: root, stdio: "inherit" });
}
