//! The modes of an upload, and the grid of the parallel and direct ones: how a file of a known size is cut into
//! chunks and parts, so requests can arrive in any order and each one knows its place.

use crate::error::ApiError;
use crate::protocol::{ContentRange, MIB, S3_MAX_PARTS};

pub use wire::Mode;

/// A file of `total` bytes cut into parts of `part_size` (the last may be shorter), each of `chunks_per_part` chunks
/// (parallel mode; 1 in direct mode, where a part is sent whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub total: u64,
    pub part_size: u64,
    pub chunk_size: u64,
}

/// A chunk that lies exactly on its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridChunk {
    /// From 0, over the whole file.
    pub index: u64,
    /// Its part's S3 number, from 1.
    pub part: u32,
    /// Its place in the part, from 0.
    pub slot: u32,
}

impl Grid {
    /// Plans the grid of a file: parts of a whole number of chunks, at least `min_part` bytes and few enough for
    /// [`S3_MAX_PARTS`]. `chunk_size` is the part size itself for direct uploads.
    pub fn plan(total: u64, chunk_size: u64, min_part: u64, max_part: u64) -> Result<Grid, ApiError> {
        if total == 0 {
            return Err(ApiError::BadRequest("size must be at least 1 byte".into()));
        }
        let needed = min_part.max(total.div_ceil(u64::from(S3_MAX_PARTS)));
        let part_size = needed.div_ceil(chunk_size) * chunk_size;
        if part_size > max_part {
            return Err(ApiError::BadRequest(format!(
                "A file of {total} bytes needs parts over the largest part size ({max_part} bytes)"
            )));
        }
        Ok(Grid { total, part_size, chunk_size })
    }

    /// A direct upload's grid: whole parts, `part_size` if the client asked for one (rounded up to what the file
    /// needs), else the smallest that works, rounded to MiB.
    pub fn plan_direct(total: u64, part_size: Option<u64>, min_part: u64, max_part: u64) -> Result<Grid, ApiError> {
        let unit = part_size.unwrap_or(MIB).max(1);
        let grid = Grid::plan(total, unit, min_part, max_part)?;
        Ok(Grid { chunk_size: grid.part_size, ..grid })
    }

    pub fn parts(&self) -> u32 {
        // At most S3_MAX_PARTS by construction.
        self.total.div_ceil(self.part_size) as u32
    }

    pub fn chunks(&self) -> u64 {
        self.total.div_ceil(self.chunk_size)
    }

    pub fn chunks_per_part(&self) -> u64 {
        self.part_size / self.chunk_size
    }

    /// Where part `number` starts, and its length.
    pub fn part_span(&self, number: u32) -> (u64, u64) {
        let start = u64::from(number - 1) * self.part_size;
        (start, self.part_size.min(self.total - start))
    }

    /// Whether `number` is one of the file's parts.
    pub fn has_part(&self, number: u32) -> bool {
        number >= 1 && number <= self.parts()
    }

    /// How many chunks part `number` holds (the last part may hold fewer).
    pub fn slots_in(&self, number: u32) -> u32 {
        let (_, len) = self.part_span(number);
        len.div_ceil(self.chunk_size) as u32
    }

    /// The length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> u64 {
        self.chunk_size.min(self.total - index * self.chunk_size)
    }

    /// The global index of a part's slot.
    pub fn chunk_index(&self, part: u32, slot: u32) -> u64 {
        u64::from(part - 1) * self.chunks_per_part() + u64::from(slot)
    }

    /// Places a chunk on the grid, or says why it is not on it.
    pub fn locate(&self, range: &ContentRange) -> Result<GridChunk, ApiError> {
        if range.total != self.total {
            return Err(ApiError::BadRequest(format!(
                "Content-Range total {} differs from the upload's size {}",
                range.total, self.total
            )));
        }
        if !range.start.is_multiple_of(self.chunk_size) {
            return Err(ApiError::BadRequest(format!(
                "Chunks start at multiples of the chunk size ({} bytes)",
                self.chunk_size
            )));
        }
        let index = range.start / self.chunk_size;
        if range.chunk_len() != self.chunk_len(index) {
            return Err(ApiError::BadRequest(format!(
                "Chunk {index} is {} bytes long, not {}",
                self.chunk_len(index),
                range.chunk_len()
            )));
        }
        let per_part = self.chunks_per_part();
        Ok(GridChunk { index, part: (index / per_part) as u32 + 1, slot: (index % per_part) as u32 })
    }
}

/// Sorted numbers as inclusive ranges: `[1, 2, 3, 7]` is `[[1, 3], [7, 7]]`. How status says what is held, in a
/// size that does not grow with the count.
pub fn ranges(sorted: impl IntoIterator<Item = u64>) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for n in sorted {
        match out.last_mut() {
            Some(last) if last[1] + 1 == n => last[1] = n,
            _ => out.push([n, n]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MAX_PART_SIZE, MIN_PART_SIZE};

    fn range(start: u64, len: u64, total: u64) -> ContentRange {
        ContentRange { start, end: start + len - 1, total }
    }

    #[test]
    fn parts_are_whole_chunks_of_at_least_the_smallest_part() {
        let grid = Grid::plan(256 * MIB, 4 * MIB, MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert_eq!((grid.part_size, grid.parts(), grid.chunks(), grid.chunks_per_part()), (8 * MIB, 32, 64, 2));
        // A huge file: parts grow so that it needs at most S3_MAX_PARTS.
        let huge = Grid::plan(4 << 40, 4 * MIB, MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert!(huge.parts() <= S3_MAX_PARTS && huge.part_size.is_multiple_of(4 * MIB));
        assert!(Grid::plan(0, MIB, MIN_PART_SIZE, MAX_PART_SIZE).is_err());
        assert!(Grid::plan(5 << 40, MIB, MIN_PART_SIZE, 64 * MIB).is_err());
    }

    #[test]
    fn chunks_are_placed_on_the_grid_or_refused() {
        let grid = Grid::plan(20 * MIB + 5, 4 * MIB, MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert_eq!((grid.parts(), grid.slots_in(1), grid.slots_in(3)), (3, 2, 2));
        assert_eq!(grid.part_span(3), (16 * MIB, 4 * MIB + 5));
        assert_eq!(
            grid.locate(&range(12 * MIB, 4 * MIB, grid.total)).unwrap(),
            GridChunk { index: 3, part: 2, slot: 1 }
        );
        let last = grid.locate(&range(20 * MIB, 5, grid.total)).unwrap();
        assert_eq!((last.index, last.part, last.slot), (5, 3, 1));
        assert_eq!(grid.chunk_index(3, 1), 5);
        assert!(grid.locate(&range(MIB, 4 * MIB, grid.total)).is_err(), "off the grid");
        assert!(grid.locate(&range(0, MIB, grid.total)).is_err(), "short");
        assert!(grid.locate(&range(0, 4 * MIB, grid.total + 1)).is_err(), "other total");
        assert!(grid.has_part(3) && !grid.has_part(0) && !grid.has_part(4));
    }

    #[test]
    fn direct_parts_are_whole_mib_or_what_was_asked() {
        let grid = Grid::plan_direct(100 * MIB, None, MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert_eq!((grid.part_size, grid.chunks_per_part(), grid.parts()), (5 * MIB, 1, 20));
        let asked = Grid::plan_direct(100 * MIB, Some(16 * MIB), MIN_PART_SIZE, MAX_PART_SIZE).unwrap();
        assert_eq!((asked.part_size, asked.parts(), asked.slots_in(7)), (16 * MIB, 7, 1));
    }

    #[test]
    fn numbers_become_ranges() {
        assert_eq!(ranges([0, 1, 2, 5, 7, 8]), vec![[0, 2], [5, 5], [7, 8]]);
        assert!(ranges([]).is_empty());
    }
}
