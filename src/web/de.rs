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
//! page ([`crate::web::primitives::name`]) and named to serde's derived
//! visitor by its place among the struct's fields, not by its name (the
//! derive's match of every name against every field's name is then dead
//! code: 3.4 KB gzipped less module); an enum's variant likewise (0.7 KB).
//!
//! The shapes that cross most are read by hand ([`FromJs`], [`read`]): a
//! record, its fields, a field value, a comment. A record is read as
//! IndexedDB hands it back on every reopen, 100,000 at a time, and as each
//! page of a load arrives; its hand reader asks JS once per value where the
//! serde path asks what the value is and then for it. Its errors are worded
//! as the serde path words them, on the same path stack. A record inside a
//! value read with serde (a feed change, a conflict, a tab message) is
//! handed over from the same hand reader ([`crate::core::handed`]), so the
//! module holds no serde reader of records at all.

use std::cell::RefCell;
use std::fmt;

use js_sys::{Array, Object, Reflect};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Unexpected, Visitor};
use wasm_bindgen::{JsCast, JsValue};

use crate::core::handed;
use crate::core::record::{self, Comment, FieldValue, Fields, Record};
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
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        // A record asks under its own name (by address: the test folds
        // away, and with it the serde form this reader never uses).
        if std::ptr::eq(name, record::HANDED) {
            handed::hand_over(Record::from_js_value(&self.0)?);
            return visitor.visit_unit();
        }
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
        visitor.visit_map(StructFields {
            object: self.0,
            fields: fields.iter(),
            index: 0,
            field: "",
            value: None,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        // The variant is named to the visitor by its place in `variants`,
        // as for a struct's fields (see `StructFields`).
        if let Some(tag) = self.0.as_string() {
            let index = variant_index(&tag, variants)?;
            return visitor.visit_enum(Variant {
                index,
                payload: None,
            });
        }
        // `{ "variant": payload }`, the externally tagged form.
        if let Some(object) = self.object() {
            let entries = Object::entries(object);
            if entries.length() == 1 {
                let pair: Array = entries.get(0).unchecked_into();
                if let Some(tag) = pair.get(0).as_string() {
                    let index = variant_index(&tag, variants)?;
                    return visitor.visit_enum(Variant {
                        index,
                        payload: Some(Reader(pair.get(1))),
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
/// as missing, so serde's defaults and `Option`s apply. Each field is
/// named to the visitor by its place in `fields`, as serde's derive numbers
/// them; an `#[serde(alias)]` would take a place of its own in `fields`
/// and shift the ones after it, so the crate's read types have none.
struct StructFields {
    object: JsValue,
    fields: std::slice::Iter<'static, &'static str>,
    /// The place in `fields` of the next one.
    index: u64,
    field: &'static str,
    value: Option<JsValue>,
}

impl<'de> de::MapAccess<'de> for StructFields {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        for &field in self.fields.by_ref() {
            let index = self.index;
            self.index += 1;
            // `object` is one (see `deserialize_struct`): no check per field.
            let value = Reflect::get(&self.object, &name(field)).unwrap_or(JsValue::UNDEFINED);
            if !value.is_undefined() {
                self.value = Some(value);
                self.field = field;
                // The field by its place in `fields`, which a derived
                // struct's field visitor matches as a number: the match
                // of each name against every field's name is then dead
                // code, gone from the module.
                let place = de::value::U64Deserializer::<ReadError>::new(index);
                return seed.deserialize(place).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, ReadError> {
        let value = self.value.take().unwrap_or(JsValue::UNDEFINED);
        step_into(Step::Field(self.field), value, seed)
    }
}

/// The place of `tag` in `variants`; serde's words when it is none.
fn variant_index(tag: &str, variants: &'static [&'static str]) -> Result<u32, ReadError> {
    match variants.iter().position(|v| *v == tag) {
        #[allow(clippy::cast_possible_truncation)] // an enum has few variants
        Some(at) => Ok(at as u32),
        None => Err(de::Error::unknown_variant(tag, variants)),
    }
}

/// An enum variant by its place: written as its name (no payload) or
/// `{ "variant": payload }`.
struct Variant {
    index: u32,
    payload: Option<Reader>,
}

impl<'de> de::EnumAccess<'de> for Variant {
    type Error = ReadError;
    type Variant = Payload;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Payload), ReadError> {
        let place = de::value::U32Deserializer::<ReadError>::new(self.index);
        Ok((seed.deserialize(place)?, Payload(self.payload)))
    }
}

/// A variant's payload; `None` for a variant written as its bare name,
/// which is a unit variant only (as serde reads a bare name).
struct Payload(Option<Reader>);

impl Payload {
    fn reader(self, expected: &'static str) -> Result<Reader, ReadError> {
        self.0
            .ok_or_else(|| de::Error::invalid_type(Unexpected::UnitVariant, &expected))
    }
}

impl<'de> de::VariantAccess<'de> for Payload {
    type Error = ReadError;

    fn unit_variant(self) -> Result<(), ReadError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, ReadError> {
        seed.deserialize(self.reader("newtype variant")?)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, ReadError> {
        de::Deserializer::deserialize_tuple(self.reader("tuple variant")?, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        de::Deserializer::deserialize_struct(self.reader("struct variant")?, "", fields, visitor)
    }
}

// The hand reader: the shapes that cross most (a record, its fields, its
// comments), read without serde. Each generic serde read is a visitor per
// type instantiated over `Reader`, and a record read through it asks JS
// for every value twice (what it is, then the value); these ask once, and
// they word their errors exactly as the serde path does (`fields.city:
// invalid type: an object, expected …`), on the same path stack.

/// A type with a hand reader (see [`read`]).
pub trait FromJs: Sized {
    /// Reads `value`.
    ///
    /// # Errors
    /// [`ReadError`] naming the first thing that did not fit, worded as
    /// [`from_js`] words it.
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError>;
}

/// Reads `value` as a `T` with its hand reader.
///
/// # Errors
/// As [`FromJs::from_js_value`].
pub fn read<T: FromJs>(value: &JsValue) -> Result<T, ReadError> {
    T::from_js_value(value)
}

/// The records of `values[from..to)` (IndexedDB's copies), read as
/// [`read`] reads each, but a run at a time: written in JS as one text
/// (`recordsText` in `web/http.rs`) and taken apart here, so a run costs
/// one crossing into wasm, not a dozen a record (its numbers beside it in
/// one array). A record the text leaves
/// out (`x`: another shape, or U+0001 in a text) is read from its object,
/// and so is the whole run should the text not read. `None`: a value that
/// is no record (its error is [`read`]'s).
pub fn read_records(values: &Array, from: u32, to: u32) -> Vec<Option<Record>> {
    let numbers = Array::new();
    let text = crate::web::http::records_text(values, from, to, &numbers);
    let numbers = js_sys::Float64Array::new(&numbers).to_vec();
    let mut numbers = numbers.into_iter();
    let mut tokens = text.split('\u{1}');
    let mut out = Vec::with_capacity((to - from) as usize);
    for at in from..to {
        let record = match tokens.next() {
            Some("r") => match record_of_tokens(&mut tokens, &mut numbers) {
                Some(record) => Some(record),
                // Out of step with the text: every record from its object.
                None => {
                    return (from..to)
                        .map(|at| read::<Record>(&values.get(at)).ok())
                        .collect()
                }
            },
            _ => read::<Record>(&values.get(at)).ok(),
        };
        out.push(record);
    }
    out
}

/// One record of `recordsText`'s tokens, after its `r`.
fn record_of_tokens<'a>(
    tokens: &mut impl Iterator<Item = &'a str>,
    numbers: &mut impl Iterator<Item = f64>,
) -> Option<Record> {
    let id = tokens.next()?.to_owned();
    let version = tokens.next()?.parse().ok()?;
    let updated_at = tokens.next()?.to_owned();
    let updated_by = tokens.next()?.to_owned();
    let count: usize = tokens.next()?.parse().ok()?;
    let mut fields = Fields::with_capacity(count.min(1_024));
    for _ in 0..count {
        let name = tokens.next()?.to_owned();
        let value = tokens.next()?;
        let value = match value.as_bytes().first()? {
            b'0' => FieldValue::Null,
            b'1' => FieldValue::Bool(false),
            b'2' => FieldValue::Bool(true),
            b'3' => FieldValue::Number(numbers.next()?),
            _ => FieldValue::Text(value.get(1..)?.to_owned()),
        };
        fields.insert(name, value);
    }
    let count: usize = tokens.next()?.parse().ok()?;
    let mut comments = Vec::with_capacity(count.min(4_096));
    for _ in 0..count {
        comments.push(Comment {
            id: tokens.next()?.to_owned(),
            author: tokens.next()?.to_owned(),
            text: tokens.next()?.to_owned(),
            created_at: tokens.next()?.to_owned(),
        });
    }
    Some(Record {
        id,
        version,
        updated_at,
        updated_by,
        fields,
        comments,
    })
}

/// `invalid type: <what value is>, expected <expected>`.
#[cold]
#[inline(never)]
fn wrong(value: &JsValue, expected: &str) -> ReadError {
    ReadError::new(format!(
        "invalid type: {}, expected {expected}",
        kind(&Reader(value.clone()).unexpected())
    ))
}

/// [`wrong`], one step further in (a leaf's error: the step is on the path
/// only while the error is worded).
#[cold]
#[inline(never)]
fn wrong_at(step: Step, value: &JsValue, expected: &str) -> ReadError {
    enter(step);
    let error = wrong(value, expected);
    leave();
    error
}

#[cold]
#[inline(never)]
fn missing(field: &'static str) -> ReadError {
    ReadError::new(format!("missing field `{field}`"))
}

/// `value` if it is a plain object (not an array), else the error a
/// struct of `expected` gives.
fn object<'a>(value: &'a JsValue, expected: &str) -> Result<&'a JsValue, ReadError> {
    if value.is_object() && !Array::is_array(value) {
        Ok(value)
    } else {
        Err(wrong(value, expected))
    }
}

/// `object[field]`, `None` when undefined (missing: defaults apply).
fn property(object: &JsValue, field: &'static str) -> Option<JsValue> {
    let value = Reflect::get(object, &name(field)).unwrap_or(JsValue::UNDEFINED);
    (!value.is_undefined()).then_some(value)
}

/// A string field: `None` when missing.
fn text_field(object: &JsValue, field: &'static str) -> Result<Option<String>, ReadError> {
    match property(object, field) {
        None => Ok(None),
        Some(value) => match value.as_string() {
            Some(s) => Ok(Some(s)),
            None => Err(wrong_at(Step::Field(field), &value, "a string")),
        },
    }
}

/// A string field that must be there.
fn required_text(object: &JsValue, field: &'static str) -> Result<String, ReadError> {
    text_field(object, field)?.ok_or_else(|| missing(field))
}

/// A `u64` field: a safe whole number, not negative; `None` when missing.
fn u64_field(object: &JsValue, field: &'static str) -> Result<Option<u64>, ReadError> {
    let Some(value) = property(object, field) else {
        return Ok(None);
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked
    match value.as_f64().and_then(safe_integer).filter(|n| *n >= 0.0) {
        Some(n) => Ok(Some(n as u64)),
        None => Err(wrong_at(Step::Field(field), &value, "u64")),
    }
}

/// A field read by `read`, with its name on the path while it is read;
/// `None` when missing.
fn nested<T>(
    object: &JsValue,
    field: &'static str,
    read: fn(&JsValue) -> Result<T, ReadError>,
) -> Result<Option<T>, ReadError> {
    let Some(value) = property(object, field) else {
        return Ok(None);
    };
    enter(Step::Field(field));
    let read = read(&value);
    leave();
    read.map(Some)
}

const FIELD_VALUE: &str = "a string, number, boolean or null";

impl FromJs for FieldValue {
    /// Strings first: most fields are text, and each question is a call
    /// into JS.
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError> {
        if let Some(s) = value.as_string() {
            Ok(FieldValue::Text(s))
        } else if let Some(n) = value.as_f64() {
            Ok(FieldValue::Number(n))
        } else if let Some(b) = value.as_bool() {
            Ok(FieldValue::Bool(b))
        } else if value.is_null() || value.is_undefined() {
            Ok(FieldValue::Null)
        } else {
            Err(wrong(value, FIELD_VALUE))
        }
    }
}

impl FromJs for Fields {
    /// An object's own enumerable string-keyed properties, as the serde
    /// path reads a map (`Object.keys` and `Object.values`: one order).
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError> {
        let object: &Object = object(value, "a map")?.unchecked_ref();
        let keys = Object::keys(object);
        let values = Object::values(object);
        let count = keys.length();
        let mut fields = Fields::with_capacity((count as usize).min(1_024));
        for i in 0..count {
            let key = keys.get(i);
            let field = values.get(i);
            let read = FieldValue::from_js_value(&field).map_err(|_| {
                let key = key.clone();
                wrong_at(Step::Key(key), &field, FIELD_VALUE)
            })?;
            // `Object.keys` gives strings only.
            fields.insert(key.as_string().unwrap_or_default(), read);
        }
        Ok(fields)
    }
}

impl FromJs for Comment {
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError> {
        let object = object(value, "struct Comment")?;
        Ok(Comment {
            id: required_text(object, "id")?,
            author: required_text(object, "author")?,
            text: required_text(object, "text")?,
            created_at: required_text(object, "createdAt")?,
        })
    }
}

impl<T: FromJs> FromJs for Vec<T> {
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError> {
        let Some(array) = value.dyn_ref::<Array>() else {
            return Err(wrong(value, "a sequence"));
        };
        let count = array.length();
        let mut items = Vec::with_capacity((count as usize).min(4_096));
        for i in 0..count {
            enter(Step::Index(i));
            let item = T::from_js_value(&array.get(i));
            leave();
            items.push(item?);
        }
        Ok(items)
    }
}

impl FromJs for Record {
    fn from_js_value(value: &JsValue) -> Result<Self, ReadError> {
        let object = object(value, "struct Record")?;
        // In the order the serde path reads them, so the first error is
        // the same one.
        let id = text_field(object, "id")?;
        let version = u64_field(object, "version")?;
        let updated_at = text_field(object, "updatedAt")?;
        let updated_by = text_field(object, "updatedBy")?;
        let fields = nested(object, "fields", Fields::from_js_value)?;
        let comments = nested(object, "comments", Vec::<Comment>::from_js_value)?;
        Ok(Record {
            id: id.ok_or_else(|| missing("id"))?,
            version: version.ok_or_else(|| missing("version"))?,
            updated_at: updated_at.unwrap_or_default(),
            updated_by: updated_by.unwrap_or_default(),
            fields: fields.unwrap_or_default(),
            comments: comments.unwrap_or_default(),
        })
    }
}
