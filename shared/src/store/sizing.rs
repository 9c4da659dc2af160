//! Records of a given shape for the write-unit figures, used by the unit test of the item encoding
//! (`store::record`) and by `bench/write_units`, so both count the same records the same way.

use super::ledger::{BufferChain, BufferedChunk, MAX_PART_GAPS, PartLedger};
use super::record::{Status, UploadRecord, item_size, write_units};

/// A record `parts` parts into a 5 TiB upload, with every flush attempt but `lost` accepted in turn, and names as
/// long as `long` asks: the longest the service stores, or typical ones. A fixture for figures, not for requests: it
/// panics if `lost` is above [`MAX_PART_GAPS`], which the ledger refuses.
pub fn record_at(parts: u32, lost: u32, long: bool) -> UploadRecord {
    let mut ledger = PartLedger::default();
    let mut number = 0;
    for i in 0..parts {
        number += if i < lost { 2 } else { 1 };
        ledger = ledger.with_part(number, &format!("\"{:032x}\"", u128::from(number) << 64 | 7)).unwrap();
    }
    let filename = if long { "é".repeat(127) } else { "holiday-2026.mov".into() };
    let owner = if long { "o".repeat(128) } else { "3f1c9a52-7d4e-4b8a-9c61-2e5f0d7b8a94".into() };
    let upload_id = crate::protocol::UploadId::new();
    let total = 5 * (1u64 << 40);
    UploadRecord {
        key: format!("uploads/{owner}/{upload_id}/{filename}"),
        upload_id,
        owner,
        filename,
        content_type: if long { "x".repeat(255) } else { "video/quicktime".into() },
        total,
        offset: total - 1,
        status: Status::Uploading,
        created_at_ms: 1_795_888_582_186,
        expires_at_ms: 1_795_974_982_186,
        // S3's upload ids run to about 170 characters.
        multipart_id: Some("m".repeat(if long { 200 } else { 128 })),
        part_size: 611 << 20,
        part_start: total - (600 << 20),
        flush_at: total,
        last_part_number: number + 1,
        parts: ledger,
        buffers: BufferChain::default().then(BufferedChunk { start: 1, crc64: 2 }),
        md5_state: crate::md5state::extend(&crate::md5state::empty(), &[7; 100]).unwrap(),
        completing_since_ms: None,
        completed: None,
        // Only anonymous uploads have one, and their owner is short; counted in the worst case all the same.
        secret_hash: if long { crate::secret::SecretHash::from_bytes(&[7; 32]) } else { None },
        // An anonymous upload counts against its network's counter, whose key is longest for an IPv6 network.
        counted: long.then(|| "client/2001:db8:85a3:8d3::/64".into()),
        mode: crate::grid::Mode::Sequential,
        chunk_size: 0,
        hook: None,
    }
}

/// Write units of a chunk on an item of `item_bytes`: its two writes, the claim and the commit, each billed on the
/// item as large as it gets.
pub fn chunk_units(item_bytes: usize) -> usize {
    2 * write_units(item_bytes, item_bytes)
}

/// Write units of a chunk before the part ledger, on a record with typical names whose item is `size_after` bytes
/// now: the item held a parts list of 19 bytes a part, so a chunk's two writes grew with the file.
pub fn units_before(parts: u32, size_after: usize) -> usize {
    let old = size_after - record_at(parts, 0, false).parts.encode().len() + 19 * parts as usize;
    chunk_units(old)
}

/// The write-unit figures at one part count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCost {
    pub parts: u32,
    /// Item bytes with typical names and no lost flush.
    pub typical_bytes: usize,
    pub typical_units: usize,
    /// Flush attempts lost in the worst case: each leaves a gap in the ledger, which keeps at most
    /// [`MAX_PART_GAPS`] of them.
    pub worst_lost: u32,
    /// Item bytes with the longest names stored and `worst_lost` lost flushes.
    pub worst_bytes: usize,
    pub worst_units: usize,
    /// Typical names, with the parts list the item held before the ledger.
    pub before_units: usize,
}

pub fn chunk_cost(parts: u32) -> ChunkCost {
    let worst_lost = parts.min(MAX_PART_GAPS as u32);
    let typical_bytes = item_size(&record_at(parts, 0, false).to_item());
    let worst_bytes = item_size(&record_at(parts, worst_lost, true).to_item());
    ChunkCost {
        parts,
        typical_bytes,
        typical_units: chunk_units(typical_bytes),
        worst_lost,
        worst_bytes,
        worst_units: chunk_units(worst_bytes),
        before_units: units_before(parts, typical_bytes),
    }
}
