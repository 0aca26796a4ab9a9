/**
 * The seeded soak (reliability item 5), first seed: simulated days of 5-minute cron ticks (SOAK_DAYS, default 4) over the inline and the queue path, through the platform model,
 * over 10 sets with faults, early rotations (some with revoke_previous) and reads here and at
 * another location, every invariant of DESIGN §4 checked after every step
 * (test/helpers/soak.ts). The second seed runs in test/soak-second.test.ts.
 *
 * Replay any seed by name (and shorten it while iterating):
 *   SOAK_SEEDS=my-seed npx vitest run test/soak.test.ts
 *   SOAK_SEEDS=my-seed SOAK_DAYS=3 npx vitest run test/soak.test.ts
 */
import { soakSeeds, soakSuite } from "./helpers/soak-seeds.ts";

const { seeds, days } = soakSeeds();
soakSuite(seeds.slice(0, 1), days);
