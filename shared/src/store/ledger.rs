//! What the record keeps of an upload's parts and buffered chunks: a fixed-size summary instead of a list, so every
//! write of the record costs the same at part 1 and at part 10,000 (DynamoDB bills a write by the item's size).
//!
//! - [`PartLedger`]: how many parts were accepted, and the CRC64NVME of their bytes. Parts are numbered 1..N with no
//!   gap, as S3 requires of a checksum-typed multipart upload: the next part is always number N + 1, and a
//!   [`FlushLease`] makes sure only one chunk's bytes are ever uploaded under it at a time. At completion S3 checks the
//!   parts against the ledger's CRC (the whole object's), so a part that changed in S3 is never completed.
//! - [`BufferChain`]: a hash chain over the buffered chunks of the part being gathered. Each buffered chunk's key
//!   holds its start, its CRC64NVME and the chain up to it, so a flush lists them and takes exactly the chain the
//!   record vouches for.

use md5::{Digest, Md5};

use crate::checksum::Crc64;

/// The accepted parts of an upload, in order: numbers 1..=`count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartLedger {
    /// Parts accepted so far.
    pub count: u32,
    /// CRC64NVME of the accepted parts' bytes, one after the other: the bytes before `part_start`.
    pub crc: Crc64,
}

impl PartLedger {
    /// The number the next part is uploaded under.
    pub fn next_number(&self) -> u32 {
        self.count + 1
    }

    /// The ledger with one more accepted part, of `len` bytes whose CRC is `crc`.
    pub fn with_part(&self, crc: Crc64, len: u64) -> PartLedger {
        PartLedger { count: self.count + 1, crc: self.crc.then(crc, len) }
    }

    /// `count u16 | crc u64`, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        // Part counts never exceed S3's 10,000.
        let mut out = (self.count as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&self.crc.0.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<PartLedger> {
        let bytes: &[u8; 10] = bytes.try_into().ok()?;
        let count = u32::from(u16::from_be_bytes([bytes[0], bytes[1]]));
        let crc = u64::from_be_bytes(bytes[2..].try_into().ok()?);
        Some(PartLedger { count, crc: Crc64(crc) })
    }
}

/// The right to upload the next part, held by the requests for one chunk: the chunk at `start`, ending before `end`,
/// whose bytes have CRC `crc` (with the buffered chunks the record vouches for, they make the part). Two requests for
/// the same chunk may hold it together: they upload the same bytes under the same number. A request for any other
/// chunk waits until the lease is committed (the commit removes it) or has run out: each holder's request ends by its
/// deadline, so past `until_ms` no upload under the lease can still land and overwrite a part accepted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushLease {
    pub start: u64,
    pub end: u64,
    pub crc: Crc64,
    pub until_ms: u64,
}

impl FlushLease {
    /// Who holds the lease: the chunk, without the time. `start u64 | end u64 | crc u64`, big-endian.
    pub fn holder(&self) -> Vec<u8> {
        [self.start, self.end, self.crc.0].iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    pub fn decode(holder: &[u8], until_ms: u64) -> Option<FlushLease> {
        let holder: &[u8; 24] = holder.try_into().ok()?;
        let word = |i: usize| holder[8 * i..8 * i + 8].try_into().ok().map(u64::from_be_bytes);
        Some(FlushLease { start: word(0)?, end: word(1)?, crc: Crc64(word(2)?), until_ms })
    }
}

/// A buffered chunk: where it starts and the CRC64NVME of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BufferedChunk {
    pub start: u64,
    pub crc64: u64,
}

impl BufferedChunk {
    /// The key's last segment: the start, the CRC and the chain with this chunk, in fixed-width hex so S3 lists an
    /// upload's chunks in upload order. Two requests with the same bytes on the same upload state write the same key
    /// (harmless); with other bytes, or on another state, another key.
    pub fn name(&self, chain: BufferChain) -> String {
        format!("{:016x}-{:016x}-{:032x}", self.start, self.crc64, u128::from_be_bytes(chain.0))
    }

    pub fn parse_name(name: &str) -> Option<(BufferedChunk, BufferChain)> {
        let mut fields = name.split('-');
        let (start, crc, chain) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() || start.len() != 16 || crc.len() != 16 || chain.len() != 32 {
            return None;
        }
        let chunk =
            BufferedChunk { start: u64::from_str_radix(start, 16).ok()?, crc64: u64::from_str_radix(crc, 16).ok()? };
        Some((chunk, BufferChain(u128::from_str_radix(chain, 16).ok()?.to_be_bytes())))
    }
}

/// Hash chain over the chunks buffered for the part being gathered; all zeros when there are none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferChain(pub [u8; 16]);

impl BufferChain {
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 16]
    }

    pub fn then(&self, chunk: BufferedChunk) -> BufferChain {
        let mut h = Md5::new();
        h.update(self.0);
        h.update(chunk.start.to_be_bytes());
        h.update(chunk.crc64.to_be_bytes());
        BufferChain(h.finalize().into())
    }

    pub fn decode(bytes: &[u8]) -> Option<BufferChain> {
        bytes.try_into().ok().map(BufferChain)
    }
}

/// A buffered object as S3 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub chunk: BufferedChunk,
    /// The chain with this chunk, as its key says.
    pub chain: BufferChain,
    pub size: u64,
    pub key: String,
}

/// Most steps a flush takes through the listed chunks: far more than a part's chunks and their leftovers need.
const MAX_STEPS: usize = 100_000;

/// The listed chunks that tile `[from, to)` and hash to `chain`, in order; `None` if there is no such sequence (a
/// chunk is gone). The other objects listed are leftovers of requests that lost the race for an offset: they chain
/// from an accepted state too, but no later chunk was ever built on them (requests only build on committed states),
/// so each is a dead end one step deep, and the walk stays linear in what is listed.
pub fn find_chain(listed: &[Listed], from: u64, to: u64, chain: BufferChain) -> Option<Vec<&Listed>> {
    let mut path: Vec<&Listed> = Vec::new();
    let mut steps = 0;
    search(listed, from, to, BufferChain::default(), chain, &mut path, &mut steps).then_some(path)
}

fn search<'a>(
    listed: &'a [Listed],
    at: u64,
    to: u64,
    so_far: BufferChain,
    chain: BufferChain,
    path: &mut Vec<&'a Listed>,
    steps: &mut usize,
) -> bool {
    if at == to {
        return so_far == chain;
    }
    // Listed in start order: the candidates at `at` are one run of the list.
    let first = listed.partition_point(|l| l.chunk.start < at);
    for candidate in listed[first..].iter().take_while(|l| l.chunk.start == at) {
        *steps += 1;
        if *steps > MAX_STEPS {
            return false;
        }
        let next = so_far.then(candidate.chunk);
        if candidate.chain != next || candidate.size == 0 || at + candidate.size > to {
            continue;
        }
        path.push(candidate);
        if search(listed, at + candidate.size, to, next, chain, path, steps) {
            return true;
        }
        path.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_numbers_parts_from_one_and_keeps_their_crc() {
        let (a, b) = (b"first part".as_slice(), b"and the second".as_slice());
        let ledger = PartLedger::default();
        assert_eq!(ledger.next_number(), 1);
        let ledger = ledger.with_part(Crc64::of(a), a.len() as u64).with_part(Crc64::of(b), b.len() as u64);
        assert_eq!(ledger.next_number(), 3);
        assert_eq!(ledger.crc, Crc64::of(&[a, b].concat()));
        assert_eq!(PartLedger::decode(&ledger.encode()), Some(ledger));
        assert_eq!(PartLedger::decode(&ledger.encode()[..9]), None);
    }

    #[test]
    fn a_lease_is_held_by_its_chunk() {
        let lease = FlushLease { start: 5 << 20, end: 10 << 20, crc: Crc64(u64::MAX - 1), until_ms: 7 };
        assert_eq!(FlushLease::decode(&lease.holder(), 7), Some(lease));
        assert_ne!(lease.holder(), FlushLease { crc: Crc64(1), ..lease }.holder());
        assert_eq!(lease.holder(), FlushLease { until_ms: 9, ..lease }.holder());
        assert_eq!(FlushLease::decode(&[0; 23], 7), None);
    }

    #[test]
    fn chunk_names_round_trip_and_sort_by_start() {
        let a = BufferedChunk { start: 9, crc64: u64::MAX };
        let b = BufferedChunk { start: 10, crc64: 0 };
        let chain = BufferChain::default().then(a);
        assert_eq!(BufferedChunk::parse_name(&a.name(chain)), Some((a, chain)));
        assert!(a.name(chain) < b.name(BufferChain::default()));
        assert!(BufferedChunk::parse_name("0-0").is_none());
        assert!(BufferedChunk::parse_name(&format!("{}-x", a.name(chain))).is_none());
    }

    /// A chunk of `size` bytes at `start`, buffered on top of `before`.
    fn listed(before: BufferChain, start: u64, size: u64, crc64: u64) -> Listed {
        let chunk = BufferedChunk { start, crc64 };
        let chain = before.then(chunk);
        Listed { chunk, chain, size, key: chunk.name(chain) }
    }

    #[test]
    fn the_chain_picks_the_accepted_chunks_among_leftovers() {
        let zero = BufferChain::default();
        let a = listed(zero, 100, 10, 1);
        let b = listed(a.chain, 110, 5, 2);
        let c = listed(b.chain, 115, 20, 3);
        // Losers: at 110 with other bytes and another length, at 115 with other bytes, and at 100 with the same
        // length as the winner.
        let mut all = vec![a.clone(), listed(zero, 100, 10, 4), listed(a.chain, 110, 7, 8), b.clone()];
        all.extend([listed(b.chain, 115, 20, 9), c.clone()]);
        all.sort_by_key(|l| l.chunk.start);
        let found = find_chain(&all, 100, 135, c.chain).unwrap();
        assert_eq!(found.iter().map(|l| l.chunk.crc64).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(find_chain(&all, 100, 135, b.chain).is_none());
        let without_b: Vec<Listed> = all.iter().filter(|l| l.chunk.crc64 != 2).cloned().collect();
        assert!(find_chain(&without_b, 100, 135, c.chain).is_none());
        assert_eq!(find_chain(&[], 100, 100, zero).unwrap().len(), 0);
    }

    #[test]
    fn many_losers_per_offset_keep_the_walk_linear() {
        let mut all = Vec::new();
        let mut chain = BufferChain::default();
        for i in 0..200u64 {
            let losers: Vec<Listed> = (1..6).map(|j| listed(chain, i * 10, 10, 1000 * i + j)).collect();
            let winner = listed(chain, i * 10, 10, 1000 * i);
            chain = winner.chain;
            all.extend(losers);
            all.push(winner);
        }
        let found = find_chain(&all, 0, 2000, chain).unwrap();
        assert_eq!(found.len(), 200);
        assert!(found.iter().all(|l| l.chunk.crc64 % 1000 == 0));
    }
}
