//! What goes into and comes out of a statement on either engine: values,
//! parameters, rows, and the placeholders PostgreSQL reads.

use super::*;

/// A value going into or coming out of a statement: the only kinds the
/// schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// An integer (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
    Int(i64),
    /// Text.
    Text(String),
}

/// Something that can be a statement parameter.
pub trait Param {
    /// This parameter as a [`SqlValue`].
    fn sql_value(&self) -> SqlValue;
}

impl Param for i64 {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(*self)
    }
}
impl Param for u16 {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(i64::from(*self))
    }
}
impl Param for bool {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Int(i64::from(*self))
    }
}
impl Param for str {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Text(self.to_owned())
    }
}
impl Param for String {
    fn sql_value(&self) -> SqlValue {
        SqlValue::Text(self.clone())
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn sql_value(&self) -> SqlValue {
        (**self).sql_value()
    }
}
impl<T: Param> Param for Option<T> {
    fn sql_value(&self) -> SqlValue {
        self.as_ref().map_or(SqlValue::Null, Param::sql_value)
    }
}

/// Something a column can be read as.
pub trait FromSql: Sized {
    /// Reads `v`.
    ///
    /// # Errors
    /// An internal error when the column holds another kind of value.
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError>;
}

pub(super) fn wrong_type(v: &SqlValue, want: &str) -> ApiError {
    ApiError::internal(format!("database: expected {want}, found {v:?}"))
}

impl FromSql for i64 {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Int(n) => Ok(*n),
            other => Err(wrong_type(other, "an integer")),
        }
    }
}
impl FromSql for u16 {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        u16::try_from(i64::from_sql(v)?).map_err(ApiError::internal)
    }
}
impl FromSql for bool {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        Ok(i64::from_sql(v)? != 0)
    }
}
impl FromSql for String {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(other, "text")),
        }
    }
}
impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: &SqlValue) -> Result<Self, ApiError> {
        match v {
            SqlValue::Null => Ok(None),
            other => T::from_sql(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub(super) Vec<SqlValue>);

impl Row {
    /// Column `i` (from 0) as a `T`.
    ///
    /// # Errors
    /// An internal error for a missing column or a value of another kind.
    pub fn get<T: FromSql>(&self, i: usize) -> Result<T, ApiError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| ApiError::internal(format!("database: no column {i}")))?;
        T::from_sql(v)
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(n) => ValueRef::Integer(*n),
            SqlValue::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

impl postgres::types::ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            // PostgreSQL tells the type it inferred for each parameter; an
            // integer goes in at that width.
            SqlValue::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot be a {ty} parameter").into()),
            },
            SqlValue::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

pub(super) fn pg_value(row: &postgres::Row, i: usize) -> Result<SqlValue, ApiError> {
    use postgres::types::Type;
    let ty = row.columns().get(i).map(|c| c.type_().clone());
    let value = match ty {
        Some(Type::INT8) => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Int),
        Some(Type::INT4) => row
            .try_get::<_, Option<i32>>(i)?
            .map(|n| SqlValue::Int(n.into())),
        Some(Type::INT2) => row
            .try_get::<_, Option<i16>>(i)?
            .map(|n| SqlValue::Int(n.into())),
        Some(Type::BOOL) => row
            .try_get::<_, Option<bool>>(i)?
            .map(|b| SqlValue::Int(b.into())),
        Some(Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR) => {
            row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text)
        }
        other => {
            return Err(ApiError::internal(format!(
                "database: column {i} has an unsupported type {other:?}"
            )))
        }
    };
    Ok(value.unwrap_or(SqlValue::Null))
}

pub(super) fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Result<SqlValue, ApiError> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(n) => SqlValue::Int(n),
        ValueRef::Text(t) => SqlValue::Text(
            std::str::from_utf8(t)
                .map_err(ApiError::internal)?
                .to_owned(),
        ),
        ValueRef::Real(_) | ValueRef::Blob(_) => {
            return Err(ApiError::internal(
                "database: a real or blob column where none is expected",
            ))
        }
    })
}

/// `?1`-style placeholders as PostgreSQL's `$1` (none sits in a string
/// literal of ours, but quotes are skipped all the same).
pub(super) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}
