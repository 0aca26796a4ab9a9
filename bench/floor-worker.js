/**
 * The floor: a bare worker in the same runtime (workerd) as the rotator, answering every
 * request with a constant JSON body of the same byte size as a key document and the same
 * headers, with no auth and no storage. Whatever the rotator's read path costs beyond this
 * is the rotator's own work. The body comes in as the BODY binding (set by bench/run.ts).
 */
export default {
  fetch(_request, env) {
    return new Response(env.BODY, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } });
  },
};
