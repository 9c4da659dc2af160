//! CRC64NVME, the checksum every mode carries (`wire::Crc64`, shared with the clients): S3 verifies each part
//! against it and, for the whole object, combines the parts' values itself (`FULL_OBJECT`), so the file is checked
//! end to end without anyone re-reading it. Here: parsing one a request carries.

pub use wire::Crc64;

use crate::error::ApiError;

/// Parses S3's form of a CRC64NVME; `what` names the field in the error.
pub fn parse(text: &str, what: &str) -> Result<Crc64, ApiError> {
    Crc64::from_base64(text).ok_or_else(|| {
        ApiError::BadRequest(format!("{what} must be a CRC64NVME: the base64 of its 8 big-endian bytes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_values_are_refused_naming_the_field() {
        assert_eq!(parse(&Crc64(42).to_base64(), "x").unwrap(), Crc64(42));
        for bad in ["", "abc", "AAAAAAAAAAAAAAAAAAAA", "!!!!!!!!!!!="] {
            let Err(ApiError::BadRequest(detail)) = parse(bad, "crc64nvme") else { panic!("{bad} parsed") };
            assert!(detail.starts_with("crc64nvme must be"), "{detail}");
        }
    }
}
