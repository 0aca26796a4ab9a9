/**
 * The offline configuration check moved to src/cli/check-core.ts (the `check` subcommand of the
 * command line); this re-export keeps the old import path working.
 */
export * from "../src/cli/check-core.ts";
