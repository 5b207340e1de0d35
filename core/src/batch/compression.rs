//! Kafka's batch compression (attribute bits 0-2): a compressed batch's records are one
//! compressed block. Batches are stored as produced; records are decompressed only where
//! Logbrook itself reads them.

use std::io::Read;

/// The most a batch's records may decompress to, so a small batch cannot make a reader
/// allocate gigabytes.
const MAX_DECOMPRESSED: usize = 256 << 20;

/// The header of Snappy in the xerial framing Kafka's Java clients write.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// A batch's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec named by a batch's attributes.
    pub(crate) fn of(attributes: u16) -> Result<Self, String> {
        Ok(match attributes & 0b111 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => return Err(format!("unknown compression codec {other}")),
        })
    }

    /// Decompresses a batch's records block.
    pub(crate) fn decompress(self, data: &[u8]) -> Result<Vec<u8>, String> {
        let bounded = |reader: &mut dyn Read| {
            let mut out = Vec::new();
            reader
                .take(MAX_DECOMPRESSED as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("{self:?} records do not decompress: {e}"))?;
            if out.len() > MAX_DECOMPRESSED {
                return Err(format!(
                    "{self:?} records decompress to more than {} MiB",
                    MAX_DECOMPRESSED >> 20
                ));
            }
            Ok(out)
        };
        match self {
            Self::None => Ok(data.to_vec()),
            Self::Gzip => bounded(&mut flate2::read::GzDecoder::new(data)),
            Self::Lz4 => bounded(&mut lz4_flex::frame::FrameDecoder::new(data)),
            Self::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(data)
                    .map_err(|e| format!("Zstd records do not decompress: {e}"))?;
                bounded(&mut decoder)
            }
            Self::Snappy => snappy(data),
        }
    }
}

/// Snappy as Kafka clients write it: xerial-framed chunks (Java) or one raw block (librdkafka).
fn snappy(data: &[u8]) -> Result<Vec<u8>, String> {
    let raw = |block: &[u8], out: &mut Vec<u8>| {
        let len = snap::raw::decompress_len(block)
            .map_err(|e| format!("Snappy records do not decompress: {e}"))?;
        if out.len() + len > MAX_DECOMPRESSED {
            return Err(format!(
                "Snappy records decompress to more than {} MiB",
                MAX_DECOMPRESSED >> 20
            ));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| format!("Snappy records do not decompress: {e}"))?;
        Ok(())
    };
    let mut out = Vec::new();
    let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC) else {
        raw(data, &mut out)?;
        return Ok(out);
    };
    // Version and compatible version, then chunks of a big-endian length and a raw block.
    rest = rest.get(8..).ok_or("Snappy framing cut short")?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("Snappy chunk length cut short")?;
        let block = rest.get(4..4 + len).ok_or("Snappy chunk cut short")?;
        raw(block, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const TEXT: &[u8] = b"records records records records, the same words again and again";

    #[test]
    fn every_codec_round_trips() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(TEXT).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(TEXT).unwrap();
        let lz4 = lz4.finish().unwrap();
        let zstd = zstd::encode_all(TEXT, 3).unwrap();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(TEXT).unwrap();
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in TEXT.chunks(20) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, data) in [
            (Codec::Gzip, gzip),
            (Codec::Lz4, lz4),
            (Codec::Zstd, zstd),
            (Codec::Snappy, raw_snappy),
            (Codec::Snappy, xerial),
        ] {
            assert_eq!(codec.decompress(&data).unwrap(), TEXT, "{codec:?}");
        }
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        assert!(Codec::Gzip.decompress(b"not gzip").is_err());
        assert!(Codec::Snappy.decompress(b"\x82SNAPPY\x00\x00").is_err());
        let bomb = zstd::encode_all(&vec![0u8; MAX_DECOMPRESSED + 10][..], 3).unwrap();
        let error = Codec::Zstd.decompress(&bomb).unwrap_err();
        assert!(error.contains("more than"), "{error}");
        assert!(Codec::of(7).is_err());
    }
}
