export { Tidings, TidingsError } from "./client.js";
export type { Options, ResetInfo, ResumeStore, State, TidingsEvent, TokenIn, TokenReason, } from "./client.js";
export { Parser } from "./parser.js";
export type { Item, StreamEvent } from "./parser.js";
