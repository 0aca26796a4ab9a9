import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { startWorker, cpuSeconds, median } from "./lib.ts";
const files = process.argv.slice(2);
const BODY = '"' + "x".repeat(240) + '"';
const ws = [];
for (const f of files) ws.push({ f: f.split("/").pop(), w: await startWorker({ modules: [{ path: f, contents: readFileSync(f, "utf8") }], storage: false, vars: { BODY } }), cpu: [], rps: [] });
for (const x of ws) spawnSync("wrk", ["-t1", "-c16", "-d2s", x.w.url + "/v1/keys/demo"]);
for (let i = 0; i < 6; i++) {
  for (const x of ws) {
    const c0 = cpuSeconds(x.w.pid);
    const out = spawnSync("wrk", ["-t1", "-c16", "-d3s", "-H", "authorization: Bearer x", x.w.url + "/v1/keys/demo"], { encoding: "utf8" }).stdout;
    const c = cpuSeconds(x.w.pid) - c0;
    const total = Number(/(\d+) requests in/.exec(out)[1]);
    x.cpu.push(c * 1e6 / total); x.rps.push(total / 3);
  }
}
for (const x of ws) console.log(x.f.padEnd(20), "median rps", median(x.rps).toFixed(0), "median CPU µs/req", median(x.cpu).toFixed(1), "min", Math.min(...x.cpu).toFixed(1));
for (const x of ws) await x.w.dispose();
