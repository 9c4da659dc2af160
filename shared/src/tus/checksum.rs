//! The checksum extension: `Upload-Checksum: <algorithm> <base64 digest>` of a request's body, checked before anything
//! of it is stored, so a body that does not match is refused whole (460) and the upload stays where it was.
//! `sha1` (the spec requires it), `md5`, `crc32` (IEEE, as tusd and zlib compute it) and `crc64nvme` (S3's).

use sha1::Digest;

use super::answer::TusError;
use crate::checksum::Crc64;
use crate::error::ApiError;

/// What `Tus-Checksum-Algorithm` announces.
pub const ALGORITHMS: &str = "sha1,md5,crc32,crc64nvme";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Md5,
    Crc32,
    Crc64Nvme,
}

impl Algorithm {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Algorithm::Sha1),
            "md5" => Some(Algorithm::Md5),
            "crc32" => Some(Algorithm::Crc32),
            "crc64nvme" => Some(Algorithm::Crc64Nvme),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Md5 => "md5",
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc64Nvme => "crc64nvme",
        }
    }

    /// The digest of `data`, as the header's base64 carries it (big-endian for the CRCs).
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Algorithm::Md5 => md5::Md5::digest(data).to_vec(),
            Algorithm::Crc32 => {
                (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, data) as u32).to_be_bytes().to_vec()
            }
            Algorithm::Crc64Nvme => Crc64::of(data).0.to_be_bytes().to_vec(),
        }
    }
}

/// A body's declared checksum, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChecksum {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

impl UploadChecksum {
    /// Parses the header: an algorithm not served is a 400, as the spec says, and so is a digest that is not base64
    /// or not the algorithm's length.
    pub fn parse(header: &str) -> Result<Self, TusError> {
        let (name, value) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| ApiError::BadRequest("Upload-Checksum must be \"<algorithm> <base64 digest>\"".into()))?;
        let algorithm = Algorithm::parse(name).ok_or_else(|| TusError::UnsupportedChecksum(name.to_string()))?;
        let digest = base64_simd::STANDARD
            .decode_to_vec(value.trim())
            .ok()
            .filter(|d| d.len() == algorithm.digest(&[]).len())
            .ok_or_else(|| ApiError::BadRequest(format!("Upload-Checksum: not a base64 {name} digest")))?;
        Ok(UploadChecksum { algorithm, digest })
    }

    /// 460 unless `body` has this checksum.
    pub fn verify(&self, body: &[u8]) -> Result<(), TusError> {
        if self.algorithm.digest(body) == self.digest {
            Ok(())
        } else {
            Err(TusError::ChecksumMismatch(self.algorithm.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, digest: &[u8]) -> String {
        format!("{name} {}", base64_simd::STANDARD.encode_to_string(digest))
    }

    #[test]
    fn every_algorithm_checks_its_digest() {
        // The spec's example: sha1 of "hello world".
        UploadChecksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap().verify(b"hello world").unwrap();
        // The check values of each algorithm's definition.
        let check = b"123456789";
        for (name, digest) in [
            ("md5", hex_digest("25f9e794323b453885f5181f1b624d0b")),
            ("crc32", 0xcbf4_3926u32.to_be_bytes().to_vec()),
            ("crc64nvme", 0xae8b_1486_0a79_9888u64.to_be_bytes().to_vec()),
        ] {
            let parsed = UploadChecksum::parse(&header(name, &digest)).unwrap();
            parsed.verify(check).unwrap();
            assert!(matches!(parsed.verify(b"12345678"), Err(TusError::ChecksumMismatch(n)) if n == name));
        }
    }

    #[test]
    fn unknown_algorithms_and_malformed_digests_are_refused() {
        assert!(matches!(UploadChecksum::parse("sha256 AAAA"), Err(TusError::UnsupportedChecksum(a)) if a == "sha256"));
        for bad in ["sha1", "sha1 !!!!", "md5 AAAA", "SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="] {
            assert!(UploadChecksum::parse(bad).is_err(), "{bad}");
        }
    }

    fn hex_digest(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }
}
