/**
 * The public surface of `toondb/protocol`: limits, error registry, message types, framing,
 * codec, request validation and path keys. Wiring only; every module is pure (no I/O).
 */

export * from './limits.js';
export * from './errors.js';
export * from './messages.js';
export * from './frame.js';
export * from './codec.js';
export * from './validate.js';
export * from './paths.js';
export { checkPlainMessagePack } from './plain-msgpack.js';
