//! The external spreadsheet: a CSV file with a header row.
//!
//! Columns (matched by name, any order, case-insensitive; others are ignored):
//! `id` (required), `version` (the record version the row was exported at,
//! may be empty), `name`, `email`, `phone`, `status`, `owner`, `city`.
//! An empty cell means "no value". Rows with the wrong number of cells, a bad
//! id, a bad version, a bad `email` or `status`, bytes that are not UTF-8 or an
//! id seen earlier in the file are counted as invalid and skipped.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::model::Record;
use crate::validate::{customer_field_errors, is_valid_record_id};

/// Columns written by `to-sheet`, in order.
pub const COLUMNS: [&str; 8] = [
    "id", "version", "name", "email", "phone", "status", "owner", "city",
];

/// The columns that are record fields.
pub const FIELD_COLUMNS: [&str; 6] = ["name", "email", "phone", "status", "owner", "city"];

/// A good row of the sheet.
#[derive(Debug, Clone)]
pub struct SheetRow {
    /// Line in the file (1 = header), for messages.
    pub line: u64,
    /// Record id.
    pub id: String,
    /// Version the row was exported at, if the sheet says.
    pub version: Option<i64>,
    /// The field columns present in the sheet; `null` for an empty cell.
    pub fields: Map<String, Value>,
}

/// A row that could not be used, and why.
#[derive(Debug, Clone)]
pub struct InvalidRow {
    /// Line in the file.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// The sheet after parsing.
#[derive(Debug, Default)]
pub struct ParsedSheet {
    /// Good rows, in file order.
    pub rows: Vec<SheetRow>,
    /// Broken rows.
    pub invalid: Vec<InvalidRow>,
}

/// Parses a sheet.
///
/// # Errors
/// When the header row is missing or has no `id` column (nothing can be used).
pub fn parse(bytes: &[u8]) -> Result<ParsedSheet, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| format!("cannot read the header row: {e}"))?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_ascii_lowercase()
        })
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let id_col = column("id").ok_or("the sheet has no id column")?;
    let version_col = column("version");
    let field_cols: Vec<(&str, usize)> = FIELD_COLUMNS
        .iter()
        .filter_map(|name| column(name).map(|i| (*name, i)))
        .collect();

    let mut out = ParsedSheet::default();
    let mut seen = HashSet::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.invalid.push(InvalidRow {
                    line,
                    reason: e.to_string(),
                });
                // A reader error on an in-memory slice does not heal; stop.
                break;
            }
        }
        let line = record.position().map_or(line, csv::Position::line);
        match parse_row(&record, &headers, id_col, version_col, &field_cols) {
            Ok(row) if !seen.insert(row.id.clone()) => out.invalid.push(InvalidRow {
                line,
                reason: format!("id {} appears twice", row.id),
            }),
            Ok(mut row) => {
                row.line = line;
                out.rows.push(row);
            }
            Err(reason) => out.invalid.push(InvalidRow { line, reason }),
        }
    }
    Ok(out)
}

fn parse_row(
    record: &csv::ByteRecord,
    headers: &[String],
    id_col: usize,
    version_col: Option<usize>,
    field_cols: &[(&str, usize)],
) -> Result<SheetRow, String> {
    if record.len() != headers.len() {
        return Err(format!(
            "expected {} cells, found {}",
            headers.len(),
            record.len()
        ));
    }
    let cell = |i: usize| -> Result<&str, String> {
        let bytes = record.get(i).unwrap_or_default();
        std::str::from_utf8(bytes).map(str::trim).map_err(|_| {
            format!(
                "column {} is not UTF-8",
                headers.get(i).map_or("?", String::as_str)
            )
        })
    };
    let id = cell(id_col)?;
    if !is_valid_record_id(id) {
        return Err(format!("bad id {id:?}"));
    }
    let version = match version_col.map(cell).transpose()? {
        None | Some("") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(format!("bad version {v:?}")),
        },
    };
    let mut fields = Map::new();
    for (name, i) in field_cols {
        let value = unescape_cell(cell(*i)?);
        let value = if value.is_empty() {
            Value::Null
        } else {
            Value::String(value.to_owned())
        };
        fields.insert((*name).to_owned(), value);
    }
    let mut errors = Map::new();
    customer_field_errors(&fields, &mut errors);
    if let Some((field, message)) = errors.iter().next() {
        let message = message.as_str().unwrap_or_default();
        return Err(format!("{field} {message}"));
    }
    Ok(SheetRow {
        line: 0,
        id: id.to_owned(),
        version,
        fields,
    })
}

/// First characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 4] = ['=', '+', '-', '@'];

/// A cell as written: a text a spreadsheet would take for a formula gets a
/// leading `'` (shown as text, never run). A text that starts with `'`
/// itself gets one more, so [`unescape_cell`] gives back exactly what was
/// written (`'` is what spreadsheets use to mean "this is text").
pub fn escape_cell(text: &str) -> String {
    if text.starts_with(FORMULA_STARTS) || text.starts_with('\'') {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A cell as read: one leading `'` is dropped (see [`escape_cell`]).
pub fn unescape_cell(text: &str) -> &str {
    text.strip_prefix('\'').unwrap_or(text)
}

/// Writes records as a sheet ([`COLUMNS`]).
///
/// # Errors
/// When the CSV writer fails (it writes to memory, so practically never).
pub fn to_csv(records: &[Record]) -> Result<Vec<u8>, String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS).map_err(|e| e.to_string())?;
    for r in records {
        let mut row = vec![r.id.clone(), r.version.to_string()];
        for name in FIELD_COLUMNS {
            row.push(escape_cell(&match r.fields.get(name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }));
        }
        writer.write_record(&row).map_err(|e| e.to_string())?;
    }
    writer.into_inner().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_broken_rows() {
        let csv = "id,version,name,email,status\n\
                   c-1,1,Acme,a@acme.example,lead\n\
                   c-2,,Globex,not-an-email,lead\n\
                   c-3,x,Bad Version,,\n\
                   c-4,2\n\
                   c-1,1,Dup,,\n\
                   c-5,,\"Quoted, name\",,churned\n";
        let parsed = parse(csv.as_bytes()).unwrap();
        let ids: Vec<&str> = parsed.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["c-1", "c-5"]);
        assert_eq!(parsed.invalid.len(), 4);
        assert_eq!(parsed.rows[1].fields["name"], "Quoted, name");
        assert_eq!(parsed.rows[0].version, Some(1));
    }

    #[test]
    fn formula_like_cells_round_trip() {
        for text in [
            "=HYPERLINK(\"x\")",
            "+1-555-0001",
            "-5",
            "@SUM(A1)",
            "'quoted",
            "''",
            "plain",
        ] {
            let written = escape_cell(text);
            assert!(!written.starts_with(FORMULA_STARTS), "{written}");
            assert_eq!(unescape_cell(&written), text);
        }
    }

    #[test]
    fn no_id_column_is_an_error() {
        assert!(parse(b"name\nAcme\n").is_err());
    }

    #[test]
    fn bad_utf8_is_one_invalid_row() {
        let mut csv = b"id,name\nc-1,Acme\nc-2,".to_vec();
        csv.extend([0xff, 0xfe, b'\n']);
        let parsed = parse(&csv).unwrap();
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(parsed.invalid.len(), 1);
    }
}
