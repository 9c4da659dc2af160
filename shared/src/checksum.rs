//! CRC64NVME, the checksum every mode carries: S3 verifies each part against it and, for the whole object, combines
//! the parts' values itself (`FULL_OBJECT`), so the file is checked end to end without anyone re-reading it.

use crc_fast::CrcAlgorithm::Crc64Nvme;

use crate::error::ApiError;

/// A CRC64NVME that was checked to be one: S3's form of it is the base64 of its 8 big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc64(pub u64);

impl Crc64 {
    pub fn of(data: &[u8]) -> Self {
        Crc64(crc_fast::checksum(Crc64Nvme, data))
    }

    /// Parses S3's form; `what` names the field in the error.
    pub fn parse(text: &str, what: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest(format!("{what} must be a CRC64NVME: the base64 of its 8 big-endian bytes"));
        let bytes = base64_simd::STANDARD.decode_to_vec(text.trim()).map_err(|_| bad())?;
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| bad())?;
        Ok(Crc64(u64::from_be_bytes(bytes)))
    }

    pub fn to_base64(self) -> String {
        base64_simd::STANDARD.encode_to_string(self.0.to_be_bytes())
    }

    /// The CRC of `self`'s bytes followed by `next_len` bytes whose CRC is `next`, without the bytes.
    pub fn then(self, next: Crc64, next_len: u64) -> Crc64 {
        Crc64(crc_fast::checksum_combine(Crc64Nvme, self.0, next.0, next_len))
    }

    /// The CRC of pieces, each given by its CRC and length, one after the other. `None` for no pieces.
    pub fn concat(pieces: impl IntoIterator<Item = (Crc64, u64)>) -> Option<Crc64> {
        pieces.into_iter().fold(None, |acc, (crc, len)| Some(acc.map_or(crc, |a: Crc64| a.then(crc, len))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nvme_check_value_in_s3_form() {
        let crc = Crc64::of(b"123456789");
        assert_eq!(crc.0, 0xae8b_1486_0a79_9888);
        assert_eq!(Crc64::parse(&crc.to_base64(), "x").unwrap(), crc);
    }

    #[test]
    fn combining_equals_hashing_the_concatenation() {
        let (a, b, c) = (b"1234".as_slice(), b"".as_slice(), b"56789".as_slice());
        let combined = Crc64::concat([(Crc64::of(a), 4), (Crc64::of(b), 0), (Crc64::of(c), 5)]).unwrap();
        assert_eq!(combined, Crc64::of(b"123456789"));
        assert_eq!(Crc64::concat([]), None);
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in ["", "abc", "AAAAAAAAAAAAAAAAAAAA", "!!!!!!!!!!!="] {
            assert!(Crc64::parse(bad, "crc64nvme").is_err(), "{bad}");
        }
    }
}
