//! The running MD5 of an upload, saved in its record between chunks so completion never re-reads the file.

use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::{Digest, Md5};

use crate::error::ApiError;

/// Serialized hasher with no bytes hashed yet.
pub fn empty() -> Vec<u8> {
    Md5::new().serialize().to_vec()
}

/// Restores a saved hasher. A state that does not restore means the record was damaged, which no client can fix.
pub fn restore(saved: &[u8]) -> Result<Md5, ApiError> {
    let state = SerializedState::<Md5>::try_from(saved).map_err(|_| {
        ApiError::Unrecoverable("The upload's checksum state is damaged; start the upload again".into())
    })?;
    Md5::deserialize(&state)
        .map_err(|_| ApiError::Unrecoverable("The upload's checksum state is damaged; start the upload again".into()))
}

/// Saved state after hashing `data` on top of `saved`.
pub fn extend(saved: &[u8], data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut hasher = restore(saved)?;
    hasher.update(data);
    Ok(save(&hasher))
}

pub fn save(hasher: &Md5) -> Vec<u8> {
    hasher.serialize().to_vec()
}

/// Lowercase hex MD5 of everything hashed into `saved`.
pub fn finish_hex(saved: &[u8]) -> Result<String, ApiError> {
    Ok(hex(&restore(saved)?.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_continues_the_hash() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut saved = empty();
        for piece in data.chunks(7_777) {
            saved = extend(&saved, piece).unwrap();
        }
        assert_eq!(finish_hex(&saved).unwrap(), hex(&Md5::digest(&data)));
        assert_eq!(finish_hex(&empty()).unwrap(), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn damaged_state_is_an_error() {
        assert!(restore(&[1, 2, 3]).is_err());
    }
}
