//! Single-message transforms, chained in `[[transforms]]` tables (Kafka Connect's SMTs):
//!
//! | `type` | does |
//! |---|---|
//! | `insert_field` | adds a static value, the topic, partition, offset or timestamp as a field |
//! | `rename_fields` | renames fields |
//! | `drop_fields` / `keep_fields` | removes fields / keeps only some |
//! | `mask_fields` | replaces fields by a fixed or empty value |
//! | `cast` | casts fields (or the whole value) to another type |
//! | `extract_field` | replaces the value (or key) by one of its fields |
//! | `value_to_key` | sets the key from fields of the value |
//! | `route` | changes the topic by a regex and/or a format with the record's timestamp |
//! | `filter` | keeps or drops records matching a predicate |
//!
//! Field transforms act on the value, or on the key with `apply_to = "key"`. A transform that
//! cannot apply to a record (a cast of `"abc"` to int64) fails with a data error, which
//! `errors.tolerance` handles like any bad record.

mod fields;
mod filter;
mod route;

use serde::Deserialize;
use serde_json::Value;

pub use fields::{
    CastConfig, CastType, DropFieldsConfig, ExtractFieldConfig, InsertFieldConfig,
    KeepFieldsConfig, MaskFieldsConfig, RenameFieldsConfig, Target, ValueToKeyConfig,
};
pub use filter::{FilterAction, FilterConfig};
pub use route::RouteConfig;

use crate::api::{Record, parse_typed};
use crate::error::{ConfigIssue, Result};

/// One configured transform.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    /// Adds fields.
    InsertField(InsertFieldConfig),
    /// Renames fields.
    RenameFields(RenameFieldsConfig),
    /// Removes fields.
    DropFields(DropFieldsConfig),
    /// Keeps only some fields.
    KeepFields(KeepFieldsConfig),
    /// Masks fields.
    MaskFields(MaskFieldsConfig),
    /// Casts fields or the whole value.
    Cast(CastConfig),
    /// Replaces the value or key by one field.
    ExtractField(ExtractFieldConfig),
    /// Sets the key from value fields.
    ValueToKey(ValueToKeyConfig),
    /// Changes the topic.
    Route(RouteConfig),
    /// Keeps or drops records.
    Filter(FilterConfig),
}

impl TransformConfig {
    /// Parses and validates one `[[transforms]]` table.
    ///
    /// # Errors
    /// The key (within the table) and why.
    pub fn parse(value: &Value) -> Result<Self, ConfigIssue> {
        let mut config: Self = parse_typed(value).map_err(|issue| {
            if issue.reason.contains("missing field `type`") {
                ConfigIssue::new("type", "each transform needs a `type`")
            } else {
                issue
            }
        })?;
        match &mut config {
            Self::Route(route) => route.prepare()?,
            Self::Filter(filter) => filter.prepare()?,
            Self::InsertField(insert) => insert.validate()?,
            Self::Cast(cast) => cast.validate()?,
            Self::ExtractField(extract) if extract.field.is_empty() => {
                return Err(ConfigIssue::new("field", "must not be empty"));
            }
            Self::ValueToKey(v) if v.fields.is_empty() => {
                return Err(ConfigIssue::new("fields", "needs at least one field"));
            }
            _ => {}
        }
        Ok(config)
    }

    /// The `type` name, for error messages and dead-letter headers.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InsertField(_) => "insert_field",
            Self::RenameFields(_) => "rename_fields",
            Self::DropFields(_) => "drop_fields",
            Self::KeepFields(_) => "keep_fields",
            Self::MaskFields(_) => "mask_fields",
            Self::Cast(_) => "cast",
            Self::ExtractField(_) => "extract_field",
            Self::ValueToKey(_) => "value_to_key",
            Self::Route(_) => "route",
            Self::Filter(_) => "filter",
        }
    }

    /// Applies the transform; `None` means the record is filtered out.
    ///
    /// # Errors
    /// [`Error::Data`](crate::Error::Data) when the record does not fit (naming the field).
    pub fn apply(&self, mut record: Record) -> Result<Option<Record>> {
        if !matches!(self, Self::Route(_) | Self::Filter(_)) {
            // The key or value may change: the log's bytes no longer stand for them.
            record.original = None;
        }
        match self {
            Self::InsertField(t) => t.apply(record).map(Some),
            Self::RenameFields(t) => t.apply(record).map(Some),
            Self::DropFields(t) => t.apply(record).map(Some),
            Self::KeepFields(t) => t.apply(record).map(Some),
            Self::MaskFields(t) => t.apply(record).map(Some),
            Self::Cast(t) => t.apply(record).map(Some),
            Self::ExtractField(t) => t.apply(record).map(Some),
            Self::ValueToKey(t) => t.apply(record).map(Some),
            Self::Route(t) => t.apply(record).map(Some),
            Self::Filter(t) => t.apply(record),
        }
    }
}

/// Applies transforms in order; `Ok(None)` when one filtered the record out. The error names
/// the failing transform's position and type.
///
/// # Errors
/// The first transform's data error.
pub fn apply_chain(transforms: &[TransformConfig], mut record: Record) -> Result<Option<Record>> {
    for (i, transform) in transforms.iter().enumerate() {
        record = match transform.apply(record) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(crate::Error::Data { message }) => {
                return Err(crate::Error::data(format!(
                    "transforms[{i}] ({}): {message}",
                    transform.name()
                )));
            }
            Err(e) => return Err(e),
        };
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests;
