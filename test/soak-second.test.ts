/**
 * The seeded soak, second and later seeds (default "bravo"): see test/soak.test.ts. A separate
 * file so that two seeds run side by side on two cores.
 */
import { soakSeeds, soakSuite } from "./helpers/soak-seeds.ts";

const { seeds, days } = soakSeeds();
soakSuite(seeds.slice(1), days);
