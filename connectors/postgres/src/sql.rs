//! What both directions share: quoting, table names, connecting, and which database errors are
//! worth retrying.

use std::fmt::Write as _;
use std::time::Duration;

use logbrook_connect::Error;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Quotes an identifier (`"my ""odd"" name"`), so no table or column name can inject SQL.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Quotes a string literal (`'it''s'`); the server runs with `standard_conforming_strings`.
pub fn quote_literal(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push('\'');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// A table, optionally schema-qualified: `orders`, `public.orders`, `"Odd.Schema"."x"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The schema; `None` means the search path (usually `public`).
    pub schema: Option<String>,
    /// The table.
    pub name: String,
}

impl TableName {
    /// Parses `table` or `schema.table`; either part may be double-quoted to hold dots or quotes.
    ///
    /// # Errors
    /// An empty part, an unclosed quote, or more than two parts.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(format!("unclosed quote in table name {text:?}")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    part.push(c);
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(format!("empty part in table name {text:?}"));
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => {}
                Some(c) => return Err(format!("unexpected {c:?} in table name {text:?}")),
            }
        }
        match parts.len() {
            1 => Ok(Self {
                schema: None,
                name: parts.remove(0),
            }),
            2 => Ok(Self {
                name: parts.remove(1),
                schema: Some(parts.remove(0)),
            }),
            _ => Err(format!(
                "table name {text:?} has more than two parts (schema.table)"
            )),
        }
    }

    /// The quoted SQL form: `"public"."orders"`.
    pub fn quoted(&self) -> String {
        let mut out = String::new();
        if let Some(schema) = &self.schema {
            let _ = write!(out, "{}.", quote_ident(schema));
        }
        out.push_str(&quote_ident(&self.name));
        out
    }

    /// `schema.table` as written by people (no quotes): topic names and logs.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_name())
    }
}

/// Checks a connection URL without connecting.
///
/// # Errors
/// Why it does not parse (the URL itself is a secret and is not repeated).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    url.parse::<PgConnectOptions>()
        .map(|_| ())
        .map_err(|e| format!("not a PostgreSQL connection URL: {e}"))
}

/// A small pool: connections are re-made after a server restart, and each is checked before use.
///
/// # Errors
/// Retriable when the server cannot be reached.
pub async fn connect(url: &str, application_name: &str, max: u32) -> Result<PgPool, Error> {
    let options = url
        .parse::<PgConnectOptions>()
        .map_err(|e| Error::fatal(format!("not a PostgreSQL connection URL: {e}")))?
        .application_name(application_name)
        // sqlx already sets DateStyle ISO and TimeZone UTC, which the source's text forms need.
        .options([("bytea_output", "hex")]);
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| classify(e, "connecting to PostgreSQL"))
}

/// Maps a database error to the runtime's kinds: lost connections, timeouts and serialization
/// conflicts are retried; bad data (SQLSTATE classes 22 and 23) is the record's fault;
/// everything else (missing tables, permissions, syntax) fails the task.
pub fn classify(error: sqlx::Error, doing: &str) -> Error {
    let message = format!("{doing}: {error}");
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Error::retriable(message),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match &code[..code.len().min(2)] {
                // Connection exceptions, insufficient resources, operator intervention
                // (server shutting down), serialization failures and deadlocks.
                "08" | "53" | "57" | "40" => Error::retriable(message),
                "22" | "23" => Error::data(message),
                _ => Error::fatal(message),
            }
        }
        _ => Error::fatal(message),
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_cannot_break_out_of_their_quotes() {
        assert_eq!(
            quote_ident(r#"a"; DROP TABLE x; --"#),
            r#""a""; DROP TABLE x; --""#
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn table_names_split_on_the_dot_outside_quotes() {
        let t = TableName::parse("public.orders").unwrap();
        assert_eq!(t.schema.as_deref(), Some("public"));
        assert_eq!(t.quoted(), r#""public"."orders""#);
        let t = TableName::parse(r#""odd.schema"."we""ird""#).unwrap();
        assert_eq!(t.schema.as_deref(), Some("odd.schema"));
        assert_eq!(t.name, r#"we"ird"#);
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("a.").is_err());
        assert!(TableName::parse(r#""open"#).is_err());
    }
}
