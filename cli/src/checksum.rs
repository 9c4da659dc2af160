//! The checksums a client sends: CRC64NVME (S3's form: base64 of the 8 big-endian bytes) of each chunk or part and of
//! the whole file, combined from the pieces' without reading anything twice; MD5 for the sequential mode.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crc_fast::CrcAlgorithm::Crc64Nvme;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc64(pub u64);

impl Crc64 {
    pub fn of(data: &[u8]) -> Crc64 {
        Crc64(crc_fast::checksum(Crc64Nvme, data))
    }

    pub fn to_base64(self) -> String {
        STANDARD.encode(self.0.to_be_bytes())
    }

    pub fn from_base64(text: &str) -> Option<Crc64> {
        let bytes: [u8; 8] = STANDARD.decode(text).ok()?.try_into().ok()?;
        Some(Crc64(u64::from_be_bytes(bytes)))
    }
}

/// The whole file's CRC from its pieces' CRCs and lengths, in file order.
pub fn whole_crc(pieces: impl IntoIterator<Item = (Crc64, u64)>) -> Option<Crc64> {
    pieces
        .into_iter()
        .map(|(crc, len)| (crc.0, len))
        .reduce(|(a, _), (b, len)| (crc_fast::checksum_combine(Crc64Nvme, a, b, len), len))
        .map(|(crc, _)| Crc64(crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_crc_is_the_crc_of_the_pieces_one_after_another() {
        // The check value of CRC-64/NVME.
        assert_eq!(Crc64::of(b"123456789"), Crc64(0xae8b_1486_0a79_9888));
        let pieces: [&[u8]; 3] = [b"1234", b"5", b"6789"];
        let whole = whole_crc(pieces.iter().map(|p| (Crc64::of(p), p.len() as u64)));
        assert_eq!(whole, Some(Crc64::of(b"123456789")));
        assert_eq!(Crc64::from_base64(&Crc64(42).to_base64()), Some(Crc64(42)));
        assert_eq!(whole_crc([]), None);
    }
}
