//! Records of a given shape for the write-unit figures, used by the unit test of the item encoding
//! (`store::record`) and by `bench/write_units`, so both count the same records the same way.

use super::ledger::{BufferChain, BufferedChunk, FlushLease, PartLedger};
use super::record::{Status, UploadRecord, item_size, write_units};
use crate::checksum::Crc64;

/// A record `parts` parts into a 5 TiB upload, with names as long as `long` asks (the longest the service stores, or
/// typical ones), and a flush lease held if `leased` (a chunk's claim sets one while it uploads a part; its commit
/// removes it). A fixture for figures, not for requests.
pub fn record_at(parts: u32, leased: bool, long: bool) -> UploadRecord {
    let ledger = PartLedger { count: parts, crc: Crc64(u64::MAX) };
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
        parts: ledger,
        flush_lease: leased.then_some(FlushLease {
            start: total - (600 << 20),
            end: total,
            crc: Crc64(u64::MAX),
            until_ms: 1_795_974_982_186,
        }),
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
        tus: None,
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
    let old = size_after - record_at(parts, false, false).parts.encode().len() + 19 * parts as usize;
    chunk_units(old)
}

/// The write-unit figures at one part count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCost {
    pub parts: u32,
    /// Item bytes with typical names and no flush lease.
    pub typical_bytes: usize,
    pub typical_units: usize,
    /// Item bytes with the longest names stored and a flush lease held.
    pub worst_bytes: usize,
    pub worst_units: usize,
    /// Typical names, with the parts list the item held before the ledger.
    pub before_units: usize,
}

pub fn chunk_cost(parts: u32) -> ChunkCost {
    let typical_bytes = item_size(&record_at(parts, false, false).to_item());
    let worst_bytes = item_size(&record_at(parts, true, true).to_item());
    ChunkCost {
        parts,
        typical_bytes,
        typical_units: chunk_units(typical_bytes),
        worst_bytes,
        worst_units: chunk_units(worst_bytes),
        before_units: units_before(parts, typical_bytes),
    }
}
