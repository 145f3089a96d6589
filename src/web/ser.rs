//! Writes Rust values as JavaScript values: a serde `Serializer` that
//! builds plain JS objects and arrays, for everything handed to the app
//! (records, statuses, conflicts, failures, history, counters) and put into
//! IndexedDB or posted to other tabs.
//!
//! It writes what `serde_wasm_bindgen::Serializer::json_compatible()` wrote,
//! value for value: `None` and `()` as `null`, a unit variant as its name,
//! any other variant as `{ name: value }`, a map as a plain object (string
//! keys only), 64-bit integers as numbers while they are safe integers and
//! an error beyond. It is ours for size: it knows no `Map`, `BigInt` or
//! options to branch on, and names a struct's fields through the crate's one
//! cache of property names ([`crate::web::primitives::name`]).

use std::fmt;

use js_sys::{Array, Object};
use serde::ser::{self, Serialize};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

use crate::web::primitives::{name, safe_integer};

#[wasm_bindgen]
extern "C" {
    /// An object whose properties are set by plain assignment.
    #[wasm_bindgen(extends = Object)]
    type Plain;

    /// `target[key] = value`.
    #[wasm_bindgen(method, structural, indexing_setter)]
    fn set(this: &Plain, key: &JsValue, value: &JsValue);
}

/// Why a value could not be written (a map key that is not a string, an
/// integer past the safe range).
#[derive(Debug)]
pub struct WriteError(String);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Writes `value` as a JS value.
///
/// # Errors
/// [`WriteError`] for a value JSON cannot hold (see the module docs).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, WriteError> {
    value.serialize(Writer)
}

/// The serializer: it holds nothing, every value is written on its own.
#[derive(Clone, Copy)]
struct Writer;

/// A JS number from a whole number, if it is a safe integer.
#[inline(never)]
fn whole(n: f64) -> Result<JsValue, WriteError> {
    safe_integer(n)
        .map(JsValue::from_f64)
        .ok_or_else(|| WriteError("a number too large for JavaScript".to_owned()))
}

/// An array being filled.
struct Elements(Array);

impl Elements {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.0.push(&value.serialize(Writer)?);
        Ok(())
    }
}

/// An object being filled: a struct's fields or a map's entries (`key`
/// holds a map's key until its value comes).
struct Fields {
    target: Plain,
    key: JsValue,
}

impl Fields {
    fn new() -> Self {
        Self {
            target: Object::new().unchecked_into(),
            key: JsValue::UNDEFINED,
        }
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        let value = value.serialize(Writer)?;
        self.target.set(&name(key), &value);
        Ok(())
    }
}

/// `{ variant: inner }`.
fn variant(variant: &'static str, inner: &JsValue) -> JsValue {
    let target: Plain = Object::new().unchecked_into();
    target.set(&name(variant), inner);
    target.into()
}

/// A tuple or struct variant's payload, wrapped in `{ variant: … }` at the end.
struct Variant<S> {
    name: &'static str,
    inner: S,
}

impl ser::Serializer for Writer {
    type Ok = JsValue;
    type Error = WriteError;
    type SerializeSeq = Elements;
    type SerializeTuple = Elements;
    type SerializeTupleStruct = Elements;
    type SerializeTupleVariant = Variant<Elements>;
    type SerializeMap = Fields;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Variant<Fields>;

    fn serialize_bool(self, v: bool) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    fn serialize_i16(self, v: i16) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    fn serialize_i32(self, v: i32) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    #[allow(clippy::cast_precision_loss)] // checked by `whole`
    fn serialize_i64(self, v: i64) -> Result<JsValue, WriteError> {
        whole(v as f64)
    }

    fn serialize_u8(self, v: u8) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    fn serialize_u16(self, v: u16) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    fn serialize_u32(self, v: u32) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    #[allow(clippy::cast_precision_loss)] // checked by `whole`
    fn serialize_u64(self, v: u64) -> Result<JsValue, WriteError> {
        whole(v as f64)
    }

    fn serialize_f32(self, v: f32) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v.into()))
    }

    fn serialize_f64(self, v: f64) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_f64(v))
    }

    fn serialize_char(self, v: char) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_str(v.encode_utf8(&mut [0; 4])))
    }

    fn serialize_str(self, v: &str) -> Result<JsValue, WriteError> {
        Ok(JsValue::from_str(v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<JsValue, WriteError> {
        let mut out = Elements(Array::new());
        for b in v {
            out.push(b)?;
        }
        Ok(out.0.into())
    }

    fn serialize_none(self) -> Result<JsValue, WriteError> {
        Ok(JsValue::NULL)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<JsValue, WriteError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<JsValue, WriteError> {
        Ok(JsValue::NULL)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<JsValue, WriteError> {
        Ok(JsValue::NULL)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<JsValue, WriteError> {
        Ok(name(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<JsValue, WriteError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        name: &'static str,
        value: &T,
    ) -> Result<JsValue, WriteError> {
        Ok(variant(name, &value.serialize(self)?))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Elements, WriteError> {
        Ok(Elements(Array::new()))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Elements, WriteError> {
        Ok(Elements(Array::new()))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Elements, WriteError> {
        Ok(Elements(Array::new()))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        name: &'static str,
        _len: usize,
    ) -> Result<Variant<Elements>, WriteError> {
        Ok(Variant {
            name,
            inner: Elements(Array::new()),
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Fields, WriteError> {
        Ok(Fields::new())
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Fields, WriteError> {
        Ok(Fields::new())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        name: &'static str,
        _len: usize,
    ) -> Result<Variant<Fields>, WriteError> {
        Ok(Variant {
            name,
            inner: Fields::new(),
        })
    }
}

impl ser::SerializeSeq for Elements {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.push(value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(self.0.into())
    }
}

impl ser::SerializeTuple for Elements {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.push(value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(self.0.into())
    }
}

impl ser::SerializeTupleStruct for Elements {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.push(value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(self.0.into())
    }
}

impl ser::SerializeTupleVariant for Variant<Elements> {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        self.inner.push(value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(variant(self.name, &self.inner.0))
    }
}

impl ser::SerializeMap for Fields {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WriteError> {
        let key = key.serialize(Writer)?;
        if !key.is_string() {
            return Err(WriteError(
                "a map key that is not a string cannot be an object key".to_owned(),
            ));
        }
        self.key = key;
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WriteError> {
        let value = value.serialize(Writer)?;
        self.target.set(&self.key, &value);
        Ok(())
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(self.target.into())
    }
}

impl ser::SerializeStruct for Fields {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.field(key, value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(self.target.into())
    }
}

impl ser::SerializeStructVariant for Variant<Fields> {
    type Ok = JsValue;
    type Error = WriteError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        self.inner.field(key, value)
    }

    fn end(self) -> Result<JsValue, WriteError> {
        Ok(variant(self.name, &self.inner.target))
    }
}
