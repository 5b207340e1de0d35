//! Serdes: how typed keys and values become record bytes and back.
//!
//! A null key or value (no bytes) is `None` for `Option` types; for other types it is an error.
//! JSON is the default; strings and raw bytes are available.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes and decodes one type.
pub trait Serde<T>: Send + Sync + 'static {
    /// Encodes `value`; `None` writes a null.
    ///
    /// # Errors
    /// A message saying why the value cannot be encoded.
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, String>;
    /// Decodes bytes, or a null.
    ///
    /// # Errors
    /// A message saying why the bytes are not a `T`.
    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, String>;
}

/// JSON through serde: any `Serialize + DeserializeOwned` type. A null decodes as JSON `null`,
/// so `Option<T>` reads it as `None`.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Json")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for Json<T> {
    fn serialize(&self, value: &T) -> Result<Option<Bytes>, String> {
        let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        // `None` of an `Option` encodes as JSON null: write a real null instead.
        Ok(if json == b"null" {
            None
        } else {
            Some(Bytes::from(json))
        })
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<T, String> {
        serde_json::from_slice(bytes.unwrap_or(b"null")).map_err(|e| e.to_string())
    }
}

/// UTF-8 strings, as `String` (null is an error) or `Option<String>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Str;

impl Serde<String> for Str {
    fn serialize(&self, value: &String) -> Result<Option<Bytes>, String> {
        Ok(Some(Bytes::copy_from_slice(value.as_bytes())))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<String, String> {
        let bytes = bytes.ok_or("null where a string was expected")?;
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
}

impl Serde<Option<String>> for Str {
    fn serialize(&self, value: &Option<String>) -> Result<Option<Bytes>, String> {
        Ok(value.as_ref().map(|v| Bytes::copy_from_slice(v.as_bytes())))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<String>, String> {
        bytes
            .map(|b| String::from_utf8(b.to_vec()).map_err(|e| e.to_string()))
            .transpose()
    }
}

/// Raw bytes, as `Bytes` (null is an error) or `Option<Bytes>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Serde<Bytes> for RawBytes {
    fn serialize(&self, value: &Bytes) -> Result<Option<Bytes>, String> {
        Ok(Some(value.clone()))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Bytes, String> {
        bytes
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| "null where bytes were expected".into())
    }
}

impl Serde<Option<Bytes>> for RawBytes {
    fn serialize(&self, value: &Option<Bytes>) -> Result<Option<Bytes>, String> {
        Ok(value.clone())
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Option<Bytes>, String> {
        Ok(bytes.map(Bytes::copy_from_slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_values_and_maps_null_to_none() {
        let serde = Json::<Option<Vec<u32>>>::new();
        assert_eq!(serde.serialize(&None).unwrap(), None);
        let bytes = serde.serialize(&Some(vec![1, 2])).unwrap().unwrap();
        assert_eq!(&bytes[..], b"[1,2]");
        assert_eq!(serde.deserialize(Some(&bytes)).unwrap(), Some(vec![1, 2]));
        assert_eq!(serde.deserialize(None).unwrap(), None);
        assert!(
            Json::<u32>::new().deserialize(None).is_err(),
            "null is not a u32"
        );
        assert!(Json::<u32>::new().deserialize(Some(b"\"x\"")).is_err());
    }

    #[test]
    fn strings_and_bytes_distinguish_null_by_type() {
        assert!(Serde::<String>::deserialize(&Str, None).is_err());
        assert_eq!(
            Serde::<Option<String>>::deserialize(&Str, None).unwrap(),
            None
        );
        assert_eq!(
            Serde::<String>::deserialize(&Str, Some(b"hi")).unwrap(),
            "hi"
        );
        assert!(Serde::<String>::deserialize(&Str, Some(&[0xff])).is_err());
        assert_eq!(
            Serde::<Option<Bytes>>::serialize(&RawBytes, &None).unwrap(),
            None
        );
    }
}
