//! `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be left out). `filename` and `filetype`
//! name the object and declare its type (sanitised, and active types stored inert, as for every upload); every pair
//! is kept as sent, so HEAD repeats the header, and handed decoded to the completion hook and the events.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::store::tus::MAX_METADATA_BYTES;

/// A checked `Upload-Metadata` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The header as sent (trimmed).
    raw: String,
    /// Each key with its decoded value (`None`: given without a value).
    pairs: Vec<(String, Option<String>)>,
}

impl Metadata {
    /// Checks a header: unique non-empty keys, base64 values that decode to text. Values must be text because the
    /// hook and the events get them as JSON strings; tus clients encode strings (tus-js-client, Uppy, tuspy).
    pub fn parse(header: &str) -> Result<Self, ApiError> {
        let raw = header.trim();
        if raw.len() > MAX_METADATA_BYTES {
            return Err(ApiError::BadRequest(format!(
                "Upload-Metadata is {} bytes, over the {MAX_METADATA_BYTES} kept: send fewer or shorter values",
                raw.len()
            )));
        }
        let mut pairs: Vec<(String, Option<String>)> = Vec::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match pair.split_once(' ') {
                Some((key, value)) => (key, Some(value.trim())),
                None => (pair, None),
            };
            if key.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(ApiError::BadRequest(format!("Upload-Metadata key {key:?} is not a valid key")));
            }
            if pairs.iter().any(|(k, _)| k == key) {
                return Err(ApiError::BadRequest(format!("Upload-Metadata key {key:?} is given more than once")));
            }
            let value = value.filter(|v| !v.is_empty()).map(|v| decode(key, v)).transpose()?;
            pairs.push((key.to_string(), value));
        }
        Ok(Metadata { raw: raw.to_string(), pairs })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    pub fn filename(&self) -> Option<&str> {
        self.get("filename")
    }

    pub fn filetype(&self) -> Option<&str> {
        self.get("filetype")
    }

    fn to_json(&self) -> Value {
        let map: Map<String, Value> =
            self.pairs.iter().map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String))).collect();
        Value::Object(map)
    }
}

fn decode(key: &str, value: &str) -> Result<String, ApiError> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(value)
        .or_else(|_| base64_simd::STANDARD_NO_PAD.decode_to_vec(value))
        .map_err(|_| ApiError::BadRequest(format!("Upload-Metadata value of {key:?} is not base64")))?;
    String::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest(format!("Upload-Metadata value of {key:?} is not text (UTF-8) once decoded")))
}

/// The pairs of a stored header as a JSON object (key to decoded text, or null for a key without a value).
pub fn decoded(raw: &str) -> Value {
    // Stored headers were checked when the upload was created.
    Metadata::parse(raw).map(|m| m.to_json()).unwrap_or_else(|_| Value::Object(Map::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_decode_and_keys_without_values_are_kept() {
        let m = Metadata::parse(" filename d29ybGQucGRm,is_confidential,filetype YXBwbGljYXRpb24vcGRm ").unwrap();
        assert_eq!(m.filename(), Some("world.pdf"));
        assert_eq!(m.filetype(), Some("application/pdf"));
        assert_eq!(m.raw(), "filename d29ybGQucGRm,is_confidential,filetype YXBwbGljYXRpb24vcGRm");
        assert_eq!(
            decoded(m.raw()),
            json!({"filename": "world.pdf", "is_confidential": null, "filetype": "application/pdf"})
        );
        // Unpadded base64, and an empty header (tuspy sends one when it has no metadata).
        assert_eq!(Metadata::parse("name YWI").unwrap().get("name"), Some("ab"));
        assert_eq!(Metadata::parse("").unwrap(), Metadata::default());
    }

    #[test]
    fn malformed_metadata_is_refused() {
        for bad in ["filename !!!", "a YQ==,a Yg==", "bin gA==", &format!("k {}", "QUFB".repeat(300))] {
            assert!(matches!(Metadata::parse(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
