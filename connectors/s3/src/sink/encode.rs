//! The bytes of one object, in the configured format.

use logbrook_connect::Record;

use super::parquet::{ParquetEncoder, Push};
use super::{Compression, Format};
use crate::layout::LineEncoder;

/// The most bytes reserved up front for one object.
const MAX_RESERVE: u64 = 256 << 20;

/// One object's encoder.
pub(crate) enum ObjectEncoder {
    /// JSON lines.
    Json {
        /// The line encoder (caches schema JSON).
        lines: LineEncoder,
        /// The encoded lines.
        out: Vec<u8>,
        /// Bytes encoded so far.
        size: u64,
    },
    /// Parquet.
    Parquet(Box<ParquetEncoder>),
}

impl ObjectEncoder {
    /// An encoder for an object of up to about `expected_bytes`.
    pub(crate) fn new(format: Format, compression: Compression, expected_bytes: u64) -> Self {
        match format {
            // Reserved up front: growing a large buffer by doubling copies it over and over.
            // Untouched capacity costs address space, not memory.
            Format::Json => Self::Json {
                lines: LineEncoder::default(),
                out: Vec::with_capacity(
                    usize::try_from(expected_bytes.min(MAX_RESERVE)).unwrap_or(0) + (64 << 10),
                ),
                size: 0,
            },
            Format::Parquet => Self::Parquet(Box::new(ParquetEncoder::new(compression))),
        }
    }

    /// Adds a record.
    ///
    /// # Errors
    /// [`Push`]: a bad record, or one that must start a new object.
    pub(crate) fn push(&mut self, record: &Record) -> Result<(), Push> {
        match self {
            Self::Json { lines, out, size } => {
                let before = out.len();
                lines.encode(record, out).map_err(Push::Reject)?;
                *size += (out.len() - before) as u64;
                Ok(())
            }
            Self::Parquet(parquet) => parquet.push(record),
        }
    }

    /// The object's size so far (for Parquet, with an estimate of its open row group).
    pub(crate) fn size(&self) -> u64 {
        match self {
            Self::Json { size, .. } => *size,
            Self::Parquet(parquet) => parquet.size(),
        }
    }

    /// The object's remaining bytes.
    ///
    /// # Errors
    /// Parquet encoding errors.
    pub(crate) fn finish(self) -> Result<Vec<u8>, String> {
        match self {
            Self::Json { out, .. } => Ok(out),
            Self::Parquet(parquet) => parquet.finish(),
        }
    }
}
