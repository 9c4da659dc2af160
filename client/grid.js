// The parallel and direct modes' grid: pieces (parallel chunks, direct parts) of one size but the last, numbered from
// 0 here. Pure functions, so the unit tests can check them without a service.

export const MODES = ['auto', 'sequential', 'parallel', 'direct'];

/**
 * The mode to try first for a file of `size` bytes: `auto` picks the sequential mode for a file of one chunk or less
 * (its two requests are the fewest round trips), direct from `directThreshold` bytes on, parallel between. A server
 * without `POST /upload/create` then gets the sequential mode (see index.js).
 */
export function wantedMode({ mode, directThreshold, chunkSize }, size) {
  if (mode !== 'auto') return mode;
  if (size <= chunkSize) return 'sequential';
  return size >= directThreshold ? 'direct' : 'parallel';
}

/** The grid of a create answer (or of a status): which field sizes the pieces depends on the mode. */
export function gridOf(mode, answer) {
  const pieceSize = mode === 'parallel' ? answer.chunk_size : answer.part_size;
  if (!Number.isInteger(pieceSize) || pieceSize < 1 || !Number.isInteger(answer.size)) {
    throw new RangeError(`The server announced an impossible grid: ${JSON.stringify(answer)}`);
  }
  return { pieceSize, count: Math.ceil(answer.size / pieceSize), size: answer.size };
}

/** Piece `index`'s bytes: [start, end). */
export function pieceSpan(grid, index) {
  const start = index * grid.pieceSize;
  return [start, Math.min(start + grid.pieceSize, grid.size)];
}

/**
 * The piece indexes a status holds: `chunks_held` (indexes from 0) in parallel mode, `parts_held` (part numbers,
 * from 1) in direct mode; both are inclusive ranges.
 */
export function heldPieces(mode, status) {
  const [ranges, first] = mode === 'parallel' ? [status.chunks_held, 0] : [status.parts_held, 1];
  const held = new Set();
  for (const [from, to] of ranges ?? []) for (let n = from; n <= to; n++) held.add(n - first);
  return held;
}
