//! One connection type over both backends, so that every store operation is written once.
//!
//! The API mirrors the small part of rusqlite the store uses (`execute`, `query_row`,
//! `prepare(..).query_map`, `execute_batch`, `optional()`), with values limited to what both
//! backends store the same way: NULL, a 64-bit integer, text and bytes. SQL is written once with
//! SQLite's `?N` placeholders; on PostgreSQL they become `$N`. Every integer column is BIGINT
//! there, so an `i64` always fits.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::{FromSql, IsNull, ToSql, Type};

/// Prepared statements one PostgreSQL connection keeps; the cache starts over when full.
pub const STATEMENT_CACHE_ENTRIES_MAX: usize = 256;

/// A value as stored by either backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Value {
        Value::Text(text.clone())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Value {
        Value::Blob(bytes)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

/// An error from either backend, or a value that does not fit the type asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", postgres_error_text(.0))]
    Postgres(#[from] postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {index}: {message}")]
    Type { index: usize, message: String },
}

impl DbError {
    /// The message a trigger raised (`RAISE(ABORT, ...)` or PL/pgSQL `RAISE EXCEPTION`), or the
    /// server's message for any other failed statement.
    pub fn message(&self) -> Option<&str> {
        match self {
            DbError::Sqlite(rusqlite::Error::SqliteFailure(_, Some(message))) => Some(message),
            DbError::Postgres(e) => e.as_db_error().map(|db| db.message()),
            _ => None,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A postgres error with its cause: the client's own `Display` says only "db error".
pub fn postgres_error_text(error: &postgres::Error) -> String {
    use std::error::Error as _;
    match (error.as_db_error(), error.source()) {
        (Some(db), _) => format!("{error}: {}", db.message()),
        (None, Some(source)) => format!("{error}: {source}"),
        (None, None) => error.to_string(),
    }
}

/// Converts a Rust value to a stored [`Value`].
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for i32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// Parameters of one statement, like rusqlite's macro of the same name.
macro_rules! params {
    () => { [] as [$crate::store::db::Value; 0] };
    ($($value:expr),+ $(,)?) => {
        [$($crate::store::db::ToValue::to_value(&$value)),+]
    };
}
pub(crate) use params;

/// Converts a stored [`Value`] to a Rust value.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromValue for u32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        u32::try_from(i).map_err(|_| format!("integer {i} out of range"))
    }
}
impl FromValue for i32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        i32::try_from(i).map_err(|_| format!("integer {i} out of range"))
    }
}
impl FromValue for u64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        u64::try_from(i).map_err(|_| format!("integer {i} out of range"))
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(i64::from_value(value)? != 0)
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// How a column is named: by its position, from 0.
pub trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row.
#[derive(Debug)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// The value of column `index` (from 0) as a `T`.
    ///
    /// # Errors
    /// When there is no such column or its value is not a `T`.
    pub fn get<I: ColumnIndex, T: FromValue>(&self, index: I) -> DbResult<T> {
        let index = index.index();
        let value = self.values.get(index).ok_or_else(|| DbError::Type {
            index,
            message: "no such column".into(),
        })?;
        T::from_value(value).map_err(|message| DbError::Type { index, message })
    }
}

/// Like rusqlite's `OptionalExtension`: no row is `Ok(None)`.
pub trait OptionalExtension<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Which SQL dialect a connection speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A PostgreSQL connection and its prepared statements.
pub struct PgConnection {
    /// Always `Some` until the connection is dropped.
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl PgConnection {
    fn client(&mut self) -> &mut postgres::Client {
        // Invariant: `client` is only taken in `drop`.
        self.client.as_mut().expect("postgres client")
    }
}

impl Drop for PgConnection {
    /// The synchronous client closes its connection by blocking on its own runtime, which panics
    /// on a thread that drives async tasks; a store dropped there closes it on a thread of its
    /// own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let closing = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(client));
            if let Err(e) = closing {
                tracing::warn!(error = %e, "could not start a thread to close a postgres connection");
            }
        }
    }
}

/// A connection to a region's database on either backend.
pub enum Connection {
    Sqlite(rusqlite::Connection),
    // The store's operations take `&Connection` (as rusqlite's do) while the postgres client needs
    // `&mut`; a connection is only ever used by one thread at a time (the writer, or a reader
    // that took it out of the pool), so a RefCell is enough.
    Postgres(Box<RefCell<PgConnection>>),
}

impl Connection {
    pub fn postgres(client: postgres::Client) -> Connection {
        Connection::Postgres(Box::new(RefCell::new(PgConnection {
            client: Some(client),
            statements: HashMap::new(),
        })))
    }

    /// Whether the server closed this connection (never for SQLite).
    pub fn is_closed(&self) -> bool {
        match self {
            Connection::Sqlite(_) => false,
            Connection::Postgres(pg) => pg
                .borrow()
                .client
                .as_ref()
                .is_none_or(postgres::Client::is_closed),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Connection::Sqlite(_) => Dialect::Sqlite,
            Connection::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    ///
    /// # Errors
    /// When the database refuses the statement.
    pub fn execute(&self, sql: &str, params: impl AsRef<[Value]>) -> DbResult<usize> {
        let params = params.as_ref();
        match self {
            // Cached: parsing a statement again on every call cost as much as running it.
            Connection::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Connection::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let statement = pg.statement(sql)?;
                let refs = pg_params(params);
                let changed = pg.client().execute(&statement, &refs)?;
                // Invariant: a row count fits in usize on every platform we build for.
                Ok(usize::try_from(changed).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs one query and returns its first row through `f`; no row is [`DbError::NoRows`].
    ///
    /// # Errors
    /// When the database refuses the query, it returns no row, or `f` fails.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl AsRef<[Value]>,
        f: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        let rows = self.query_rows(sql, params.as_ref(), Some(1))?;
        match rows.first() {
            Some(row) => f(row),
            None => Err(DbError::NoRows),
        }
    }

    /// A statement to run with [`Statement::query_map`].
    ///
    /// # Errors
    /// Never on its own; errors come when the statement runs.
    pub fn prepare<'c>(&'c self, sql: &str) -> DbResult<Statement<'c>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// Runs statements without parameters, separated by semicolons.
    ///
    /// # Errors
    /// When the database refuses one of them.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Connection::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Connection::Postgres(pg) => Ok(pg.borrow_mut().client().batch_execute(sql)?),
        }
    }

    fn query_rows(&self, sql: &str, params: &[Value], limit: Option<usize>) -> DbResult<Vec<Row>> {
        match self {
            Connection::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for index in 0..columns {
                        values.push(sqlite_value(row.get_ref(index)?));
                    }
                    out.push(Row { values });
                    if limit.is_some_and(|l| out.len() >= l) {
                        break;
                    }
                }
                Ok(out)
            }
            Connection::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let statement = pg.statement(sql)?;
                let refs = pg_params(params);
                let rows = pg.client().query(&statement, &refs)?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows.iter().take(limit.unwrap_or(usize::MAX)) {
                    let mut values = Vec::with_capacity(row.len());
                    for index in 0..row.len() {
                        values.push(row.try_get::<_, Value>(index)?);
                    }
                    out.push(Row { values });
                }
                Ok(out)
            }
        }
    }
}

/// A statement bound to its connection; it runs when queried.
pub struct Statement<'c> {
    conn: &'c Connection,
    sql: String,
}

impl Statement<'_> {
    /// Runs the query and maps every row through `f`.
    ///
    /// # Errors
    /// When the database refuses the query (errors of `f` are in the items).
    pub fn query_map<T>(
        &mut self,
        params: impl AsRef<[Value]>,
        mut f: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let rows = self.conn.query_rows(&self.sql, params.as_ref(), None)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }
}

impl PgConnection {
    fn statement(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE_ENTRIES_MAX {
            self.statements.clear();
        }
        let statement = self.client().prepare(&to_postgres_placeholders(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn pg_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Rewrites SQLite's `?N` placeholders to PostgreSQL's `$N`, leaving string literals and quoted
/// names alone.
pub fn to_postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        // The schema has no REAL column; a float would only come from an expression, and the
        // store never asks for one.
        ValueRef::Real(f) => Value::Text(f.to_string()),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be a {ty} parameter").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    fn to_sql_checked(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let fits = match self {
            Value::Null => true,
            Value::Int(_) => matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL),
            Value::Text(_) => <&str as ToSql>::accepts(ty),
            Value::Blob(_) => <&[u8] as ToSql>::accepts(ty),
        };
        if !fits {
            return Err(format!("{self:?} cannot be a {ty} parameter").into());
        }
        self.to_sql(ty, out)
    }
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::BYTEA
        ) || <String as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            to_postgres_placeholders("SELECT '?1', \"a?2\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?2\" FROM t WHERE a = $1 AND b = $12"
        );
    }
}
