/** Consumer authentication moved to src/identity/ (static tokens, OIDC, managed, bindings). */
export { type Identity, authenticate, bindingIdentity, rememberedIdentity } from "./identity/index.ts";
