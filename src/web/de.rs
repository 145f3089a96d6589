//! Reads JavaScript values into Rust types: a serde `Deserializer` over a
//! `JsValue`, for what the app passes in, what the server answers and what
//! another tab posts.
//!
//! It reads the JSON-shaped values this crate meets (`null`/`undefined`,
//! booleans, numbers, strings, arrays, plain objects) the way
//! serde-wasm-bindgen reads them, and nothing else (no `Map`, `BigInt` or
//! byte arrays). It is ours for size: its error type words a wrong value by
//! its kind ("a number") instead of through serde's `Unexpected`, whose
//! `Display` pulls the whole float formatter into the module, and a struct
//! reads only the fields it names, each name made into a JS string once per
//! page ([`crate::web::primitives::name`]).

use std::cell::RefCell;
use std::fmt;

use js_sys::{Array, Object, Reflect};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use wasm_bindgen::{JsCast, JsValue};

use crate::web::primitives::{name, safe_integer};

/// Why a value could not be read, in words fit for an error message, with
/// where: `fields.city: invalid type: an object, expected …`.
#[derive(Debug)]
pub struct ReadError(String);

impl ReadError {
    /// `message`, after the path being read (see [`PATH`]).
    #[cold]
    #[inline(never)]
    fn new(message: String) -> Self {
        let path = PATH.with(|path| {
            let mut out = String::new();
            for step in path.borrow().iter() {
                let name = match step {
                    Step::Field(name) => (*name).to_owned(),
                    Step::Key(key) => key.as_string().unwrap_or_default(),
                    Step::Index(i) => {
                        out.push_str(&format!("[{i}]"));
                        continue;
                    }
                };
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&name);
            }
            out
        });
        if path.is_empty() {
            Self(message)
        } else {
            Self(format!("{path}: {message}"))
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One step into a value: a struct field, an object key, an array index.
enum Step {
    Field(&'static str),
    Key(JsValue),
    Index(u32),
}

thread_local! {
    /// Where the read is, for error messages. A stack rather than a path
    /// added to each error on the way out: that would be code in every
    /// monomorphised reader, this is two calls.
    static PATH: RefCell<Vec<Step>> = const { RefCell::new(Vec::new()) };
}

/// Reads `seed` one step further in.
fn step_into<'de, T: DeserializeSeed<'de>>(
    step: Step,
    value: JsValue,
    seed: T,
) -> Result<T::Value, ReadError> {
    enter(step);
    let read = seed.deserialize(Reader(value));
    leave();
    read
}

#[inline(never)]
fn enter(step: Step) {
    PATH.with(|path| path.borrow_mut().push(step));
}

#[inline(never)]
fn leave() {
    PATH.with(|path| {
        path.borrow_mut().pop();
    });
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    #[cold]
    #[inline(never)]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }

    #[cold]
    #[inline(never)]
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!("invalid type: {}, expected {exp}", kind(&unexp)))
    }

    #[cold]
    #[inline(never)]
    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!("invalid value: {}, expected {exp}", kind(&unexp)))
    }
}

/// Words a value serde did not expect without formatting a float.
fn kind(unexp: &Unexpected<'_>) -> String {
    match *unexp {
        Unexpected::Bool(b) => format!("boolean `{b}`"),
        Unexpected::Unsigned(n) => format!("integer `{n}`"),
        Unexpected::Signed(n) => format!("integer `{n}`"),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Char(c) => format!("character {c:?}"),
        Unexpected::Float(_) => "a number".to_owned(),
        Unexpected::Unit => "null".to_owned(),
        Unexpected::Option => "an optional value".to_owned(),
        Unexpected::Seq => "an array".to_owned(),
        Unexpected::Map => "an object".to_owned(),
        Unexpected::Other(s) => s.to_owned(),
        _ => "a value of another kind".to_owned(),
    }
}

/// Reads `value` as a `T`.
///
/// # Errors
/// [`ReadError`] naming the first thing that did not fit.
pub fn from_js<T: DeserializeOwned>(value: JsValue) -> Result<T, ReadError> {
    T::deserialize(Reader(value))
}

/// A JS value being read.
struct Reader(JsValue);

impl Reader {
    fn is_nullish(&self) -> bool {
        self.0.is_null() || self.0.is_undefined()
    }

    /// The value as a safe integer, if it is one.
    fn integer(&self) -> Option<f64> {
        self.0.as_f64().and_then(safe_integer)
    }

    /// What the value is, for an error.
    fn unexpected(&self) -> Unexpected<'static> {
        if self.is_nullish() {
            Unexpected::Unit
        } else if let Some(b) = self.0.as_bool() {
            Unexpected::Bool(b)
        } else if self.0.as_f64().is_some() {
            Unexpected::Float(0.0)
        } else if self.0.is_string() {
            Unexpected::Other("a string")
        } else if Array::is_array(&self.0) {
            Unexpected::Seq
        } else if self.0.is_object() {
            Unexpected::Map
        } else {
            Unexpected::Other("a value of another kind")
        }
    }

    fn invalid<'de, V: Visitor<'de>>(&self, visitor: &V) -> Result<V::Value, ReadError> {
        Err(self.wrong_type(visitor))
    }

    /// Not generic, so each visitor's error path is a call, not a copy.
    #[cold]
    #[inline(never)]
    fn wrong_type(&self, expected: &dyn de::Expected) -> ReadError {
        de::Error::invalid_type(self.unexpected(), expected)
    }

    fn object(&self) -> Option<&Object> {
        (self.0.is_object() && !Array::is_array(&self.0)).then(|| self.0.unchecked_ref())
    }
}

impl<'de> de::Deserializer<'de> for Reader {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.is_nullish() {
            visitor.visit_unit()
        } else if let Some(b) = self.0.as_bool() {
            visitor.visit_bool(b)
        } else if let Some(v) = self.0.as_f64() {
            #[allow(clippy::cast_possible_truncation)] // a safe integer fits
            match self.integer() {
                Some(i) => visitor.visit_i64(i as i64),
                None => visitor.visit_f64(v),
            }
        } else if let Some(s) = self.0.as_string() {
            visitor.visit_string(s)
        } else if Array::is_array(&self.0) {
            self.deserialize_seq(visitor)
        } else if self.0.is_object() {
            self.deserialize_map(visitor)
        } else {
            self.invalid(&visitor)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        #[allow(clippy::cast_possible_truncation)] // a safe integer fits
        match self.integer() {
            Some(i) => visitor.visit_i64(i as i64),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked
        match self.integer().filter(|i| *i >= 0.0) {
            Some(i) => visitor.visit_u64(i as u64),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_f64() {
            Some(v) => visitor.visit_f64(v),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.as_string() {
            Some(s) => visitor.visit_string(s),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.invalid(&visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.invalid(&visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.is_nullish() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        if self.is_nullish() {
            visitor.visit_unit()
        } else {
            self.invalid(&visitor)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.0.dyn_ref::<Array>() {
            Some(array) => visitor.visit_seq(Items { array, next: 0 }),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.object() {
            Some(object) => visitor.visit_map(Entries {
                entries: Object::entries(object),
                next: 0,
                key: JsValue::UNDEFINED,
                value: None,
            }),
            None => self.invalid(&visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        if self.object().is_none() {
            return self.invalid(&visitor);
        }
        visitor.visit_map(Fields {
            object: self.0,
            fields: fields.iter(),
            field: "",
            value: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        if let Some(tag) = self.0.as_string() {
            return visitor.visit_enum(de::value::StringDeserializer::<ReadError>::new(tag));
        }
        // `{ "variant": payload }`, the externally tagged form.
        if let Some(object) = self.object() {
            let entries = Object::entries(object);
            if entries.length() == 1 {
                let pair: Array = entries.get(0).unchecked_into();
                if let Some(tag) = pair.get(0).as_string() {
                    return visitor.visit_enum(Variant {
                        tag,
                        payload: Reader(pair.get(1)),
                    });
                }
            }
        }
        self.invalid(&visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }
}

/// The elements of an array.
struct Items<'a> {
    array: &'a Array,
    next: u32,
}

impl<'de> de::SeqAccess<'de> for Items<'_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        if self.next >= self.array.length() {
            return Ok(None);
        }
        let at = self.next;
        self.next += 1;
        step_into(Step::Index(at), self.array.get(at), seed).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.array.length() - self.next) as usize)
    }
}

/// An object's own enumerable properties, as a map.
struct Entries {
    entries: Array,
    next: u32,
    key: JsValue,
    value: Option<JsValue>,
}

impl<'de> de::MapAccess<'de> for Entries {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        if self.next >= self.entries.length() {
            return Ok(None);
        }
        let pair: Array = self.entries.get(self.next).unchecked_into();
        self.next += 1;
        self.value = Some(pair.get(1));
        self.key = pair.get(0);
        seed.deserialize(Reader(self.key.clone())).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, ReadError> {
        let value = self.value.take().unwrap_or(JsValue::UNDEFINED);
        let key = std::mem::replace(&mut self.key, JsValue::UNDEFINED);
        step_into(Step::Key(key), value, seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.entries.length() - self.next) as usize)
    }
}

/// The named fields of a struct, read one by one; an `undefined` field reads
/// as missing, so serde's defaults and `Option`s apply.
struct Fields {
    object: JsValue,
    fields: std::slice::Iter<'static, &'static str>,
    field: &'static str,
    value: Option<JsValue>,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        for &field in self.fields.by_ref() {
            // `object` is one (see `deserialize_struct`): no check per field.
            let value = Reflect::get(&self.object, &name(field)).unwrap_or(JsValue::UNDEFINED);
            if !value.is_undefined() {
                self.value = Some(value);
                self.field = field;
                return seed.deserialize(field.into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, ReadError> {
        let value = self.value.take().unwrap_or(JsValue::UNDEFINED);
        step_into(Step::Field(self.field), value, seed)
    }
}

/// An enum variant written `{ "variant": payload }`.
struct Variant {
    tag: String,
    payload: Reader,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = ReadError;
    type Variant = Reader;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Reader), ReadError> {
        let tag: de::value::StringDeserializer<ReadError> = self.tag.into_deserializer();
        Ok((seed.deserialize(tag)?, self.payload))
    }
}

impl<'de> de::VariantAccess<'de> for Reader {
    type Error = ReadError;

    fn unit_variant(self) -> Result<(), ReadError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, ReadError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, ReadError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
