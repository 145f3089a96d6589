//! TypeScript declarations of the data that crosses into JavaScript.
//!
//! Written by hand rather than derived: the record model must read as
//! PROTOCOL.md's JSON (`null` values, a `fields` object, not `Map`s), and
//! `Record` would shadow TypeScript's built-in of that name.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const RECORD_TS: &'static str = r#"
/** A field value: the protocol allows string, number, boolean and null. */
export type FieldValue = string | number | boolean | null;

/** Field name to value; in a change, `null` clears a field. */
export type Fields = { [field: string]: FieldValue };

/** An append-only comment with a client-made id. */
export interface Comment {
  id: string;
  author: string;
  text: string;
  createdAt: string;
  /** In `view`: not yet acknowledged by the server. */
  pending?: true;
}

/** A record as PROTOCOL.md defines it. */
export interface CrmRecord {
  id: string;
  version: number;
  updatedAt: string;
  updatedBy: string;
  fields: Fields;
  comments: Comment[];
  /** In `view`: this tab has staged changes or unsent comments. */
  pending?: true;
  /** Read from IndexedDB while offline. */
  stale?: true;
}
"#;
