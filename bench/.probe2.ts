import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, startWorker } from "./lib.ts";
const w = await startWorker({ modules: [{ path: path.join(ROOT, "bench", ".probe-env.js"), contents: readFileSync(path.join(ROOT, "bench", ".probe-env.js"), "utf8") }], storage: true, vars: { X: "1" } });
for (let i = 0; i < 5; i++) console.log(await (await fetch(w.url + "/")).text());
await w.dispose();
