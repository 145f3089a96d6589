//! A collection's confirmed records held compactly: each record packed into
//! one byte string (one allocation), the field names written once per
//! collection and referred to by number, the records in a `Vec` sorted by
//! id. A record is unpacked into a [`Record`] when it is read.
//!
//! With 100,000 customers of six short fields a record took about 760
//! bytes of wasm memory as a `BTreeMap<RecordKey, Record>` (the collection
//! and id in every key, every string its own allocation, B-tree leaves half
//! full); packed it takes its bytes of text plus a few dozen
//! (docs/performance.md, "Memory").
//!
//! The layout of a packed record (lengths and counts as LEB128):
//! `id`, `version`, `updated_at`, `updated_by`, the field count, then each
//! field as its name's number, a tag (null, false, true, number as 8 bytes
//! little-endian, text) and the text; then the comment count and each
//! comment's `id`, `author`, `text`, `created_at`.

use crate::core::query::{FieldValueRef, RecordRead};
use crate::core::record::{Comment, FieldValue, Fields, Record};

/// One collection's confirmed records, by id.
#[derive(Debug, Clone, Default)]
pub struct Shelf {
    /// The field names seen, each once; a packed field names its index.
    names: Vec<Box<str>>,
    /// The packed records, sorted by id.
    records: Vec<Box<[u8]>>,
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const TEXT: u8 = 4;

impl Shelf {
    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn find(&self, id: &str) -> Result<usize, usize> {
        self.records
            .binary_search_by(|packed| id_of(packed).cmp(id.as_bytes()))
    }

    /// Whether the record `id` is here.
    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    /// The record `id`, unpacked.
    pub fn get(&self, id: &str) -> Option<Record> {
        let at = self.find(id).ok()?;
        self.unpack(&self.records[at])
    }

    /// The version of record `id`, without unpacking the rest.
    pub fn version(&self, id: &str) -> Option<u64> {
        let at = self.find(id).ok()?;
        let mut reader = Reader::new(&self.records[at]);
        reader.bytes()?;
        reader.number()
    }

    /// Puts `record` in (replacing the one of its id); returns whether one
    /// was replaced.
    pub fn insert(&mut self, record: &Record) -> bool {
        let packed = self.pack(record);
        match self.find(&record.id) {
            Ok(at) => {
                self.records[at] = packed;
                true
            }
            Err(at) => {
                self.records.insert(at, packed);
                false
            }
        }
    }

    /// The version and comment count of record `id`, without unpacking
    /// it (what tells whether an object made of the record still shows it).
    pub fn stamp(&self, id: &str) -> Option<(u64, usize)> {
        let at = self.find(id).ok()?;
        let packed = Packed::of(&self.names, &self.records[at])?;
        Some((packed.version, packed.comment_count()?))
    }

    /// Each record's id, version and comment count, in id order, without
    /// unpacking.
    pub fn stamps(&self) -> impl Iterator<Item = (&str, u64, usize)> + '_ {
        self.each_packed().map(|packed| {
            (
                packed.id,
                packed.version,
                packed.comment_count().unwrap_or(0),
            )
        })
    }

    /// Takes the record `id` out; returns whether it was here.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.find(id) {
            Ok(at) => {
                self.records.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Every record, unpacked one at a time, in id order.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.records.iter().filter_map(|packed| self.unpack(packed))
    }

    /// Every record as a query reads it, in id order, without unpacking:
    /// a query's first run over a collection reads only the fields it asks
    /// for, with no copy of the rest.
    pub fn each_packed(&self) -> impl Iterator<Item = Packed<'_>> + '_ {
        self.records
            .iter()
            .filter_map(|packed| Packed::of(&self.names, packed))
    }

    /// Every id, in order (not unpacking the records).
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.records
            .iter()
            .map(|packed| std::str::from_utf8(id_of(packed)).unwrap_or_default())
    }

    /// Up to `count` ids after `after` (from the first without it), in order.
    pub fn ids_after(&self, after: Option<&str>, count: usize) -> Vec<String> {
        let from = match after {
            Some(id) => match self.find(id) {
                Ok(at) => at + 1,
                Err(at) => at,
            },
            None => 0,
        };
        self.records
            .iter()
            .skip(from)
            .take(count)
            .map(|packed| String::from_utf8_lossy(id_of(packed)).into_owned())
            .collect()
    }

    /// A shelf of `records` (sorted here; of equal ids the last is kept).
    pub fn of(records: impl IntoIterator<Item = Record>) -> Self {
        let mut shelf = Self::default();
        let mut packed: Vec<Box<[u8]>> = records.into_iter().map(|r| shelf.pack(&r)).collect();
        // Stable, so the last of equal ids is the last of its run.
        crate::core::sort::sort_by(&mut packed, |a, b| id_of(a).cmp(id_of(b)));
        let mut kept: Vec<Box<[u8]>> = Vec::with_capacity(packed.len());
        for record in packed {
            match kept.last_mut() {
                Some(last) if id_of(last) == id_of(&record) => *last = record,
                _ => kept.push(record),
            }
        }
        shelf.records = kept;
        shelf
    }

    fn name_index(&mut self, name: &str) -> usize {
        match self.names.iter().position(|known| &**known == name) {
            Some(at) => at,
            None => {
                self.names.push(name.into());
                self.names.len() - 1
            }
        }
    }

    fn pack(&mut self, record: &Record) -> Box<[u8]> {
        let mut out = Vec::with_capacity(packed_size(record));
        put_text(&mut out, &record.id);
        put_number(&mut out, record.version);
        put_text(&mut out, &record.updated_at);
        put_text(&mut out, &record.updated_by);
        put_number(&mut out, record.fields.len() as u64);
        for (name, value) in &record.fields {
            put_number(&mut out, self.name_index(name) as u64);
            match value {
                FieldValue::Null => out.push(NULL),
                FieldValue::Bool(false) => out.push(FALSE),
                FieldValue::Bool(true) => out.push(TRUE),
                FieldValue::Number(n) => {
                    out.push(NUMBER);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                FieldValue::Text(text) => {
                    out.push(TEXT);
                    put_text(&mut out, text);
                }
            }
        }
        put_number(&mut out, record.comments.len() as u64);
        for comment in &record.comments {
            put_text(&mut out, &comment.id);
            put_text(&mut out, &comment.author);
            put_text(&mut out, &comment.text);
            put_text(&mut out, &comment.created_at);
        }
        out.into_boxed_slice()
    }

    /// The record of `packed` (`None` only if it was not packed here,
    /// which cannot be).
    fn unpack(&self, packed: &[u8]) -> Option<Record> {
        let mut reader = Reader::new(packed);
        let id = reader.text()?;
        let version = reader.number()?;
        let updated_at = reader.text()?;
        let updated_by = reader.text()?;
        let count = reader.count()?;
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.names.get(reader.count()?)?;
            let value = match reader.byte()? {
                NULL => FieldValue::Null,
                FALSE => FieldValue::Bool(false),
                TRUE => FieldValue::Bool(true),
                NUMBER => {
                    let bytes: [u8; 8] = reader.take(8)?.try_into().ok()?;
                    FieldValue::Number(f64::from_le_bytes(bytes))
                }
                _ => FieldValue::Text(reader.text()?),
            };
            pairs.push((name.to_string(), value));
        }
        let mut fields = Fields::new();
        // Packed in name order, so each pair goes on the end.
        for (name, value) in pairs {
            fields.insert(name, value);
        }
        let count = reader.count()?;
        let mut comments = Vec::with_capacity(count);
        for _ in 0..count {
            comments.push(Comment {
                id: reader.text()?,
                author: reader.text()?,
                text: reader.text()?,
                created_at: reader.text()?,
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
}

/// A packed record read in place: its id, version and who changed it last
/// read out, its fields read when asked for (see [`RecordRead`]).
pub struct Packed<'a> {
    names: &'a [Box<str>],
    id: &'a str,
    version: u64,
    updated_at: &'a str,
    updated_by: &'a str,
    /// How many fields, and the bytes from the first field on.
    count: usize,
    fields: &'a [u8],
}

impl<'a> Packed<'a> {
    fn of(names: &'a [Box<str>], packed: &'a [u8]) -> Option<Self> {
        let mut reader = Reader::new(packed);
        let id = reader.str()?;
        let version = reader.number()?;
        let updated_at = reader.str()?;
        let updated_by = reader.str()?;
        let count = reader.count()?;
        Some(Self {
            names,
            id,
            version,
            updated_at,
            updated_by,
            count,
            fields: reader.rest,
        })
    }

    /// How many comments, read past the fields.
    fn comment_count(&self) -> Option<usize> {
        let mut reader = Reader::new(self.fields);
        for _ in 0..self.count {
            reader.count()?;
            match reader.byte()? {
                NULL | FALSE | TRUE => {}
                NUMBER => {
                    reader.take(8)?;
                }
                _ => {
                    reader.bytes()?;
                }
            }
        }
        reader.count()
    }

    /// Each field as its name's number and its value, until `each` says
    /// to stop (returns `true`); whether it stopped.
    fn scan(&self, each: &mut dyn FnMut(usize, FieldValueRef<'a>) -> bool) -> bool {
        let mut reader = Reader::new(self.fields);
        for _ in 0..self.count {
            let Some(name) = reader.count() else {
                return false;
            };
            let value = match reader.byte() {
                Some(NULL) => FieldValueRef::Null,
                Some(FALSE) => FieldValueRef::Bool(false),
                Some(TRUE) => FieldValueRef::Bool(true),
                Some(NUMBER) => match reader.take(8).and_then(|b| b.try_into().ok()) {
                    Some(bytes) => FieldValueRef::Number(f64::from_le_bytes(bytes)),
                    None => return false,
                },
                Some(_) => match reader.str() {
                    Some(text) => FieldValueRef::Text(text),
                    None => return false,
                },
                None => return false,
            };
            if each(name, value) {
                return true;
            }
        }
        false
    }
}

impl RecordRead for Packed<'_> {
    fn id(&self) -> &str {
        self.id
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn updated_at(&self) -> &str {
        self.updated_at
    }

    fn updated_by(&self) -> &str {
        self.updated_by
    }

    fn field(&self, name: &str) -> Option<FieldValueRef<'_>> {
        let wanted = self.names.iter().position(|known| &**known == name)?;
        let mut found = None;
        self.scan(&mut |at, value| {
            if at == wanted {
                found = Some(value);
            }
            at == wanted
        });
        found
    }

    fn any_field(&self, found: &mut dyn FnMut(FieldValueRef<'_>) -> bool) -> bool {
        self.scan(&mut |_, value| found(value))
    }
}

/// The bytes `pack` writes for `record`, close enough to size its buffer
/// once.
fn packed_size(record: &Record) -> usize {
    let text = |s: &str| s.len() + 2;
    let fields: usize = record
        .fields
        .iter()
        .map(|(_, value)| {
            2 + match value {
                FieldValue::Text(t) => text(t),
                FieldValue::Number(_) => 8,
                _ => 0,
            }
        })
        .sum();
    let comments: usize = record
        .comments
        .iter()
        .map(|c| text(&c.id) + text(&c.author) + text(&c.text) + text(&c.created_at))
        .sum();
    text(&record.id)
        + 10
        + text(&record.updated_at)
        + text(&record.updated_by)
        + 2
        + fields
        + 2
        + comments
}

fn put_number(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_number(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// The id's bytes at the start of a packed record.
fn id_of(packed: &[u8]) -> &[u8] {
    let mut reader = Reader::new(packed);
    reader.bytes().unwrap_or_default()
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(taken)
    }

    fn number(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
            shift += 7;
            if shift >= 64 {
                return None;
            }
        }
    }

    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.number()?).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.count()?;
        self.take(len)
    }

    /// Text borrowed (packed from a `String`, so valid UTF-8).
    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn text(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, version: u64, pairs: &[(&str, FieldValue)]) -> Record {
        let mut fields = Fields::new();
        for (name, value) in pairs {
            fields.insert((*name).to_owned(), value.clone());
        }
        Record {
            id: id.to_owned(),
            version,
            updated_at: "2026-01-02T03:04:05Z".into(),
            updated_by: "alice".into(),
            fields,
            comments: vec![Comment {
                id: "c1".into(),
                author: "bob".into(),
                text: "ünïcode ✓".into(),
                created_at: "2026-01-02T03:04:06Z".into(),
            }],
        }
    }

    #[test]
    fn records_come_back_as_they_went_in_in_id_order() {
        let a = record(
            "b",
            3,
            &[
                ("name", FieldValue::Text("Ann".into())),
                ("vip", FieldValue::Bool(true)),
                ("off", FieldValue::Bool(false)),
                ("gone", FieldValue::Null),
                ("score", FieldValue::Number(-1.5)),
                ("big", FieldValue::Number(1e300)),
            ],
        );
        let b = record("a", u64::MAX, &[("name", FieldValue::Text(String::new()))]);
        let mut shelf = Shelf::default();
        assert!(!shelf.insert(&a));
        assert!(!shelf.insert(&b));
        assert_eq!(shelf.get("b"), Some(a.clone()));
        assert_eq!(shelf.get("a"), Some(b.clone()));
        assert_eq!(shelf.version("a"), Some(u64::MAX));
        // Past every kind of field, to the comments.
        assert_eq!(shelf.stamp("b"), Some((3, 1)));
        assert_eq!(shelf.stamp("c"), None);
        assert_eq!(
            shelf.stamps().collect::<Vec<_>>(),
            vec![("a", u64::MAX, 1), ("b", 3, 1)]
        );
        assert_eq!(shelf.get("c"), None);
        assert_eq!(shelf.iter().collect::<Vec<_>>(), vec![b.clone(), a.clone()]);
        assert_eq!(shelf.ids().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(shelf.ids_after(Some("a"), 5), vec!["b".to_owned()]);
        assert_eq!(shelf.ids_after(Some("0"), 1), vec!["a".to_owned()]);
        // The name is written once for both records.
        assert_eq!(shelf.names.iter().filter(|n| &***n == "name").count(), 1);
        let newer = record("b", 4, &[]);
        assert!(shelf.insert(&newer));
        assert_eq!(shelf.get("b"), Some(newer));
        assert!(shelf.remove("a"));
        assert!(!shelf.remove("a"));
        assert_eq!(shelf.len(), 1);
    }

    #[test]
    fn a_packed_record_reads_as_its_record_does() {
        use crate::core::query::Query;
        let a = record(
            "a",
            7,
            &[
                ("name", FieldValue::Text("Ann Lyon".into())),
                ("vip", FieldValue::Bool(true)),
                ("gone", FieldValue::Null),
                ("phone", FieldValue::Number(5551234.0)),
            ],
        );
        let b = record("b", 2, &[("city", FieldValue::Text("Paris".into()))]);
        let shelf = Shelf::of(vec![a.clone(), b.clone()]);
        let packed: Vec<Packed<'_>> = shelf.each_packed().collect();
        assert_eq!(packed.len(), 2);
        for (read, record) in packed.iter().zip([&a, &b]) {
            assert_eq!(read.id(), record.id());
            assert_eq!(read.version(), record.version);
            assert_eq!(read.updated_at(), record.updated_at());
            assert_eq!(read.updated_by(), record.updated_by());
            for name in ["name", "vip", "gone", "phone", "city", "nowhere"] {
                assert_eq!(
                    format!("{:?}", read.field(name)),
                    format!("{:?}", record.field(name))
                );
            }
            for search in ["lyon", "555", "true", "par", "zzz"] {
                let query = Query {
                    search: Some(search.into()),
                    ..Query::default()
                };
                assert_eq!(query.matches(read), query.matches(record), "{search}");
            }
        }
    }

    #[test]
    fn a_shelf_of_many_keeps_the_last_of_an_id() {
        let first = record("x", 1, &[]);
        let last = record("x", 2, &[]);
        let shelf = Shelf::of(vec![record("y", 1, &[]), first, last.clone()]);
        assert_eq!(shelf.len(), 2);
        assert_eq!(shelf.get("x"), Some(last));
    }
}
