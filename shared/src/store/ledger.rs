//! What the record keeps of an upload's parts and buffered chunks: a fixed-size summary instead of a list, so every
//! write of the record costs the same at part 1 and at part 9,000 (DynamoDB bills a write by the item's size).
//!
//! - [`PartLedger`]: how many parts were accepted, which part numbers they have (numbers are consecutive except where
//!   a flush attempt lost or failed, and only those gaps are kept), and a running MD5 over their ETags. S3's ListParts
//!   says what each part's ETag is at completion; the digest proves it is what was accepted.
//! - [`BufferChain`]: a hash chain over the buffered chunks of the part being gathered. Each buffered chunk's key
//!   holds its start, its CRC64NVME and the chain up to it, so a flush lists them and takes exactly the chain the
//!   record vouches for.

use md5::{Digest, Md5};

use crate::md5state;

/// Flush attempts an upload may lose or fail before it has to start over: each one that is followed by a part
/// accepted under a later number costs one gap (4 bytes of record).
pub const MAX_PART_GAPS: usize = 64;

/// The accepted parts of an upload, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartLedger {
    /// Parts accepted so far.
    pub count: u32,
    /// `(index, number)` (both from 1) of each accepted part whose number is not its predecessor's plus one.
    gaps: Vec<(u16, u16)>,
    /// Running MD5 (saved state) over each accepted ETag's 16 bytes: finished, it is the MD5 part of the multipart
    /// ETag.
    digest: Vec<u8>,
    /// False once an ETag was not a plain MD5 (SSE-KMS): then the digest covers the ETags' text, and the object's
    /// ETag cannot be predicted.
    etags_are_md5: bool,
}

/// The part number and ETag of an accepted part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub etag: String,
}

/// Why a part cannot be added to the ledger.
#[derive(Debug, PartialEq, Eq)]
pub enum LedgerFull {
    /// More than [`MAX_PART_GAPS`] flush attempts were lost.
    TooManyGaps,
    /// The saved digest does not restore.
    Damaged,
}

impl Default for PartLedger {
    fn default() -> Self {
        PartLedger { count: 0, gaps: Vec::new(), digest: md5state::empty(), etags_are_md5: true }
    }
}

impl PartLedger {
    /// The number of the last accepted part (0 before the first).
    pub fn last_number(&self) -> u32 {
        match self.gaps.last() {
            Some(&(index, number)) => u32::from(number) + (self.count - u32::from(index)),
            None => self.count,
        }
    }

    /// The ledger with one more accepted part.
    pub fn with_part(&self, number: u32, etag: &str) -> Result<PartLedger, LedgerFull> {
        let mut next = self.clone();
        next.count += 1;
        if !self.has_room_for(number) {
            return Err(LedgerFull::TooManyGaps);
        }
        if number != self.last_number() + 1 {
            // Part numbers and counts never exceed S3's 10,000.
            next.gaps.push((next.count as u16, number as u16));
        }
        let mut hasher = md5state::restore(&self.digest).map_err(|_| LedgerFull::Damaged)?;
        match md5_etag_bytes(etag) {
            Some(raw) if next.etags_are_md5 => hasher.update(raw),
            _ => {
                next.etags_are_md5 = false;
                hasher.update((etag.len() as u32).to_be_bytes());
                hasher.update(etag.as_bytes());
            }
        }
        next.digest = md5state::save(&hasher);
        Ok(next)
    }

    /// Would a part under `number` be accepted after these? False when it needs a gap and no gap is left.
    pub fn has_room_for(&self, number: u32) -> bool {
        number == self.last_number() + 1 || self.gaps.len() < MAX_PART_GAPS
    }

    /// The part numbers of the accepted parts, in order.
    pub fn numbers(&self) -> Vec<u32> {
        let mut numbers = Vec::with_capacity(self.count as usize);
        let mut gaps = self.gaps.iter().peekable();
        let mut number = 0;
        for index in 1..=self.count {
            number = match gaps.next_if(|&&(i, _)| u32::from(i) == index) {
                Some(&(_, n)) => u32::from(n),
                None => number + 1,
            };
            numbers.push(number);
        }
        numbers
    }

    /// Whether `parts` (from S3, in the ledger's order) are exactly the accepted parts.
    pub fn vouches_for(&self, parts: &[Part]) -> bool {
        if parts.len() != self.count as usize || parts.iter().map(|p| p.number).ne(self.numbers()) {
            return false;
        }
        let mut replay = PartLedger::default();
        for part in parts {
            match replay.with_part(part.number, &part.etag) {
                Ok(next) => replay = next,
                Err(_) => return false,
            }
        }
        replay.digest == self.digest
    }

    /// The ETag S3 gives the completed object: the MD5 of the parts' MD5s, then the part count. `None` when a part's
    /// ETag was not an MD5 (SSE-KMS): then it cannot be predicted.
    pub fn multipart_etag(&self) -> Option<String> {
        let md5 = md5state::finish_hex(&self.digest).ok()?;
        self.etags_are_md5.then(|| format!("\"{md5}-{}\"", self.count))
    }

    /// `count u16 | flags u8 | gap count u8 | gaps (u16 index, u16 number)... | MD5 state`.
    pub fn encode(&self) -> Vec<u8> {
        let state = &self.digest;
        let mut out = Vec::with_capacity(4 + 4 * self.gaps.len() + state.len());
        out.extend_from_slice(&(self.count as u16).to_be_bytes());
        out.push(u8::from(self.etags_are_md5));
        out.push(self.gaps.len() as u8);
        for (index, number) in &self.gaps {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&number.to_be_bytes());
        }
        out.extend_from_slice(state);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<PartLedger> {
        let (head, rest) = bytes.split_at_checked(4)?;
        let count = u32::from(u16::from_be_bytes([head[0], head[1]]));
        let etags_are_md5 = match head[2] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let (gap_bytes, state) = rest.split_at_checked(4 * usize::from(head[3]))?;
        let gaps: Vec<(u16, u16)> = gap_bytes
            .chunks_exact(4)
            .map(|g| (u16::from_be_bytes([g[0], g[1]]), u16::from_be_bytes([g[2], g[3]])))
            .collect();
        let ordered = gaps.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if !ordered || gaps.last().is_some_and(|&(index, _)| u32::from(index) > count) {
            return None;
        }
        md5state::restore(state).ok()?;
        Some(PartLedger { count, gaps, digest: state.to_vec(), etags_are_md5 })
    }
}

/// The 16 bytes of an ETag of the form `"<32 lowercase hex>"`: S3's ETag of a part uploaded without SSE-KMS.
pub fn md5_etag_bytes(etag: &str) -> Option<[u8; 16]> {
    let inner = etag.strip_prefix('"')?.strip_suffix('"')?;
    if inner.len() != 32 || !inner.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, byte) in raw.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&inner[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(raw)
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
    use crate::md5state::hex;

    fn etag(i: u32) -> String {
        format!("\"{:032x}\"", u128::from(i) * 0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn numbers_follow_the_gaps() {
        let mut ledger = PartLedger::default();
        for number in [1, 2, 5, 6, 9] {
            assert!(ledger.has_room_for(number));
            ledger = ledger.with_part(number, &etag(number)).unwrap();
        }
        assert_eq!(ledger.numbers(), vec![1, 2, 5, 6, 9]);
        assert_eq!(ledger.last_number(), 9);
        assert_eq!(PartLedger::decode(&ledger.encode()).unwrap(), ledger);
    }

    #[test]
    fn the_digest_is_the_multipart_etag_and_vouches_only_for_the_accepted_etags() {
        let parts: Vec<Part> = [1, 3, 4].iter().map(|&n| Part { number: n, etag: etag(n) }).collect();
        let mut ledger = PartLedger::default();
        for p in &parts {
            ledger = ledger.with_part(p.number, &p.etag).unwrap();
        }
        let mut joined = Vec::new();
        for p in &parts {
            joined.extend_from_slice(&md5_etag_bytes(&p.etag).unwrap());
        }
        assert_eq!(ledger.multipart_etag().unwrap(), format!("\"{}-3\"", hex(&Md5::digest(&joined))));
        assert!(ledger.vouches_for(&parts));
        let mut changed = parts.clone();
        changed[1].etag = etag(99);
        assert!(!ledger.vouches_for(&changed));
        assert!(!ledger.vouches_for(&parts[..2]));
        let renumbered: Vec<Part> = parts.iter().map(|p| Part { number: p.number + 1, ..p.clone() }).collect();
        assert!(!ledger.vouches_for(&renumbered));
    }

    #[test]
    fn non_md5_etags_are_covered_but_not_predicted() {
        let ledger = PartLedger::default().with_part(1, "\"kms-etag\"").unwrap();
        assert!(ledger.multipart_etag().is_none());
        assert!(ledger.vouches_for(&[Part { number: 1, etag: "\"kms-etag\"".into() }]));
        assert!(!ledger.vouches_for(&[Part { number: 1, etag: "\"kms-etaG\"".into() }]));
        assert_eq!(PartLedger::decode(&ledger.encode()).unwrap(), ledger);
    }

    #[test]
    fn gaps_are_bounded() {
        let mut ledger = PartLedger::default();
        let mut number = 0;
        for _ in 0..MAX_PART_GAPS {
            number += 2;
            ledger = ledger.with_part(number, &etag(number)).unwrap();
        }
        assert!(!ledger.has_room_for(number + 2));
        assert_eq!(ledger.with_part(number + 2, &etag(0)), Err(LedgerFull::TooManyGaps));
        assert!(ledger.with_part(number + 1, &etag(0)).is_ok());
    }

    #[test]
    fn damaged_ledgers_do_not_decode() {
        let ledger = PartLedger::default().with_part(2, &etag(2)).unwrap().encode();
        assert!(PartLedger::decode(&ledger[..ledger.len() - 1]).is_none());
        assert!(PartLedger::decode(&[0, 1, 7, 0]).is_none());
        let mut bad_gap = ledger.clone();
        bad_gap[1] = 0; // count 0, but a gap at index 1
        assert!(PartLedger::decode(&bad_gap).is_none());
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
