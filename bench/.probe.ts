import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, startWorker, cpuSeconds } from "./lib.ts";
const floor = await startWorker({ modules: [{ path: path.join(ROOT, "bench", "floor-worker.js"), contents: readFileSync(path.join(ROOT, "bench", "floor-worker.js"), "utf8") }], storage: false, vars: { BODY: '"' + "x".repeat(240) + '"' } });
console.log(floor.url, floor.pid);
const c0 = cpuSeconds(floor.pid);
await new Promise((r) => setTimeout(r, Number(process.argv[2] ?? 20) * 1000));
console.log("cpu", cpuSeconds(floor.pid) - c0);
await floor.dispose();
