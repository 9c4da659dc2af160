//! What the service (`shared`) and its clients (`cli`) agree on byte for byte, in one place so the two cannot drift:
//! CRC64NVME in S3's form, and the upload modes' names. The client crate stays free of the server's (and the AWS
//! SDK's) dependencies.

use crc_fast::CrcAlgorithm::Crc64Nvme;
use serde::{Deserialize, Serialize};

/// A CRC64NVME, the checksum every mode carries: S3 verifies each part against it and, for the whole object,
/// combines the parts' values itself (`FULL_OBJECT`). S3's form of it is the base64 of its 8 big-endian bytes. The
/// default is the CRC of no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crc64(pub u64);

impl Crc64 {
    pub fn of(data: &[u8]) -> Self {
        Crc64(crc_fast::checksum(Crc64Nvme, data))
    }

    /// S3's form; `None` if the text is not the base64 of 8 bytes.
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes: [u8; 8] = base64_simd::STANDARD.decode_to_vec(text.trim()).ok()?.try_into().ok()?;
        Some(Crc64(u64::from_be_bytes(bytes)))
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

/// How an upload's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// django-chunked-upload's protocol: chunks in order, MD5 at completion.
    Sequential,
    /// Chunks through the API on a grid, in any order and concurrently; the chunk that fills a part uploads it.
    Parallel,
    /// Parts PUT straight to S3 with presigned URLs.
    Direct,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Parallel => "parallel",
            Mode::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Mode::Sequential, Mode::Parallel, Mode::Direct].into_iter().find(|m| m.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nvme_check_value_in_s3_form() {
        let crc = Crc64::of(b"123456789");
        assert_eq!(crc.0, 0xae8b_1486_0a79_9888);
        assert_eq!(Crc64::from_base64(&crc.to_base64()), Some(crc));
        for bad in ["", "abc", "AAAAAAAAAAAAAAAAAAAA", "!!!!!!!!!!!="] {
            assert_eq!(Crc64::from_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn combining_equals_hashing_the_concatenation() {
        let (a, b, c) = (b"1234".as_slice(), b"".as_slice(), b"56789".as_slice());
        let combined = Crc64::concat([(Crc64::of(a), 4), (Crc64::of(b), 0), (Crc64::of(c), 5)]).unwrap();
        assert_eq!(combined, Crc64::of(b"123456789"));
        assert_eq!(Crc64::concat([]), None);
        assert_eq!(Crc64::default(), Crc64::of(b""));
        assert_eq!(Crc64::default().then(Crc64::of(c), 5), Crc64::of(c));
    }

    #[test]
    fn modes_by_name_and_in_json() {
        for mode in [Mode::Sequential, Mode::Parallel, Mode::Direct] {
            assert_eq!(Mode::parse(mode.as_str()), Some(mode));
            assert_eq!(serde_json::to_string(&mode).unwrap(), format!("\"{}\"", mode.as_str()));
            assert_eq!(serde_json::from_str::<Mode>(&format!("\"{}\"", mode.as_str())).unwrap(), mode);
        }
        assert_eq!(Mode::parse("Parallel"), None);
    }
}
