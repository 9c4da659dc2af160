// CRC64NVME, its combination, and the grid modes' pure helpers (mode choice, grid, held pieces).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { crc64Combine, crc64FromBase64, crc64OfPieces, crc64ToBase64, crc64nvme } from '../crc64.js';
import { gridOf, heldPieces, pieceSpan, wantedMode } from '../grid.js';

// Bit by bit, as the Python in docs/modes.md: the reference the table-driven code is checked against.
function crc64Bitwise(bytes) {
  let crc = 0xffffffffffffffffn;
  for (const byte of bytes) {
    crc ^= BigInt(byte);
    for (let bit = 0; bit < 8; bit++) crc = crc & 1n ? (crc >> 1n) ^ 0x9a6c9329ac4bc9b5n : crc >> 1n;
  }
  return crc ^ 0xffffffffffffffffn;
}

describe('CRC64NVME', () => {
  test('the check value of "123456789" is 0xae8b14860a799888', () => {
    assert.equal(crc64nvme(new TextEncoder().encode('123456789')), 0xae8b14860a799888n);
  });

  test('agrees with the bitwise definition for every length up to 40, and on views at odd offsets', () => {
    const bytes = randomBytes(41);
    for (let length = 0; length <= 40; length++) {
      assert.equal(crc64nvme(bytes.subarray(0, length)), crc64Bitwise(bytes.subarray(0, length)), `length ${length}`);
      assert.equal(crc64nvme(bytes.subarray(1, length + 1)), crc64Bitwise(bytes.subarray(1, length + 1)));
    }
  });

  test("combining the pieces' CRCs gives the whole one, whatever the cuts", () => {
    const bytes = randomBytes(300_001);
    const whole = crc64nvme(bytes);
    for (const cut of [1, 7, 65_536, 150_000, 300_000]) {
      const combined = crc64Combine(
        crc64nvme(bytes.subarray(0, cut)),
        crc64nvme(bytes.subarray(cut)),
        bytes.length - cut,
      );
      assert.equal(combined, whole, `cut at ${cut}`);
    }
    const pieces = [];
    for (let start = 0; start < bytes.length; start += 65_536) {
      const piece = bytes.subarray(start, start + 65_536);
      pieces.push({ crc: crc64nvme(piece), length: piece.length });
    }
    assert.equal(crc64OfPieces(pieces), whole);
    assert.equal(crc64Combine(whole, crc64nvme(new Uint8Array(0)), 0), whole);
  });

  test('base64 of the 8 big-endian bytes, as S3 writes it', () => {
    assert.equal(crc64ToBase64(0xae8b14860a799888n), Buffer.from('ae8b14860a799888', 'hex').toString('base64'));
    assert.equal(crc64FromBase64(crc64ToBase64(0x0102030405060708n)), 0x0102030405060708n);
    assert.throws(() => crc64FromBase64('AAAA'), RangeError);
  });
});

describe('grid modes', () => {
  const MIB = 1024 * 1024;
  test('auto: sequential for one chunk, direct from the threshold on, parallel between; other modes as asked', () => {
    const auto = { mode: 'auto', directThreshold: 16 * MIB, chunkSize: 4 * MIB };
    assert.equal(wantedMode(auto, 16 * MIB), 'direct');
    assert.equal(wantedMode(auto, 16 * MIB - 1), 'parallel');
    assert.equal(wantedMode(auto, 4 * MIB + 1), 'parallel');
    assert.equal(wantedMode(auto, 4 * MIB), 'sequential');
    assert.equal(wantedMode(auto, 1), 'sequential');
    for (const mode of ['sequential', 'parallel', 'direct']) assert.equal(wantedMode({ ...auto, mode }, 1), mode);
  });

  test('grids: chunks in parallel mode, parts in direct mode; held ranges as piece indexes', () => {
    const parallel = gridOf('parallel', { size: 10_000_000, chunk_size: 4 * MIB, part_size: 8 * MIB });
    assert.deepEqual(parallel, { pieceSize: 4 * MIB, count: 3, size: 10_000_000 });
    assert.deepEqual(pieceSpan(parallel, 2), [8 * MIB, 10_000_000]);
    assert.deepEqual(gridOf('direct', { size: 10_000_000, part_size: 5 * MIB }).count, 2);
    assert.throws(() => gridOf('direct', { size: 10 }), RangeError);
    assert.deepEqual(
      [
        ...heldPieces('parallel', {
          chunks_held: [
            [0, 0],
            [2, 4],
          ],
        }),
      ],
      [0, 2, 3, 4],
    );
    assert.deepEqual([...heldPieces('direct', { parts_held: [[1, 2]] })], [0, 1]);
  });
});
