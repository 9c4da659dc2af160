// CRC-64/NVME (S3's CRC64NVME): bit-reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones; the check
// value of "123456789" is 0xae8b14860a799888.
//
// The bytes go through slicing-by-8 on two 32-bit halves (no BigInt in the loop: V8 keeps them as small integers);
// combining CRCs, which happens once per chunk, uses BigInt. See README.md for the speed measured in Chromium.

const POLY_HI = 0x9a6c9329;
const POLY_LO = 0xac4bc9b5;
const POLY = 0x9a6c9329ac4bc9b5n;
const MASK = 0xffffffffffffffffn;
const SLICES = 8;

// HI[k][n], LO[k][n]: the CRC register after byte n followed by k zero bytes (slicing-by-8's tables). One typed array
// per slice, not one flat table: Chromium runs the loop about twice as fast so (see README.md).
const HI = [];
const LO = [];
for (let k = 0; k < SLICES; k++) {
  HI.push(new Int32Array(256));
  LO.push(new Int32Array(256));
  for (let n = 0; n < 256; n++) {
    let hi = 0;
    let lo = n;
    if (k === 0) {
      for (let bit = 0; bit < 8; bit++) {
        const odd = lo & 1;
        lo = (lo >>> 1) | ((hi & 1) << 31);
        hi >>>= 1;
        if (odd) {
          hi ^= POLY_HI;
          lo ^= POLY_LO;
        }
      }
    } else {
      const low = LO[k - 1][n] & 0xff;
      hi = (HI[k - 1][n] >>> 8) ^ HI[0][low];
      lo = ((LO[k - 1][n] >>> 8) | (HI[k - 1][n] << 24)) ^ LO[0][low];
    }
    HI[k][n] = hi;
    LO[k][n] = lo;
  }
}

/** The CRC64NVME of `data` (an ArrayBuffer or a view), as a BigInt. */
export function crc64nvme(data) {
  const bytes =
    data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  // Words are read little-endian, as every browser's platform is; an unaligned view is copied first.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const words = new Int32Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 2);
  // Locals, not the module's bindings: V8 runs the loop faster so.
  const [H0, H1, H2, H3, H4, H5, H6, H7] = HI;
  const [L0, L1, L2, L3, L4, L5, L6, L7] = LO;
  let hi = -1;
  let lo = -1;
  const pairs = words.length & ~1;
  for (let w = 0; w < pairs; w += 2) {
    const a = lo ^ words[w];
    const b = hi ^ words[w + 1];
    // Byte j of the 8 goes through the table for (7 - j) zero bytes after it.
    const i0 = a & 0xff;
    const i1 = (a >>> 8) & 0xff;
    const i2 = (a >>> 16) & 0xff;
    const i3 = a >>> 24;
    const i4 = b & 0xff;
    const i5 = (b >>> 8) & 0xff;
    const i6 = (b >>> 16) & 0xff;
    const i7 = b >>> 24;
    hi = H7[i0] ^ H6[i1] ^ H5[i2] ^ H4[i3] ^ H3[i4] ^ H2[i5] ^ H1[i6] ^ H0[i7];
    lo = L7[i0] ^ L6[i1] ^ L5[i2] ^ L4[i3] ^ L3[i4] ^ L2[i5] ^ L1[i6] ^ L0[i7];
  }
  for (let i = pairs * 4; i < bytes.length; i++) {
    const n = (lo ^ bytes[i]) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ L0[n];
    hi = (hi >>> 8) ^ H0[n];
  }
  return ((BigInt(~hi >>> 0) << 32n) | BigInt(~lo >>> 0)) & MASK;
}

// ------------------------------------------------------------------------------------------------ combining
// As zlib's crc32_combine: a CRC register is a polynomial over GF(2) (bit 63 the x^0 term, being reflected); the
// CRC of A followed by B is crc(A) * x^(8 * len(B)) mod P, plus crc(B). Powers x^(2^k) come from a table.

const X0 = 1n << 63n;

function multiplyModP(a, b) {
  let product = 0n;
  for (let m = X0; m > 0n; m >>= 1n) {
    if (a & m) {
      product ^= b;
      if ((a & (m - 1n)) === 0n) break;
    }
    b = b & 1n ? (b >> 1n) ^ POLY : b >> 1n;
  }
  return product;
}

// X2N[k] = x^(2^k) mod P.
const X2N = [X0 >> 1n];
for (let k = 1; k < 64; k++) X2N.push(multiplyModP(X2N[k - 1], X2N[k - 1]));

const shiftCache = new Map(); // bytes -> x^(8 * bytes) mod P: chunks have one size, so this is asked again and again

function shiftOperator(bytes) {
  let operator = shiftCache.get(bytes);
  if (operator === undefined) {
    operator = X0;
    let k = 3; // 8 bits a byte
    for (let n = BigInt(bytes); n > 0n; n >>= 1n, k++) if (n & 1n) operator = multiplyModP(X2N[k % 64], operator);
    if (shiftCache.size > 64) shiftCache.clear();
    shiftCache.set(bytes, operator);
  }
  return operator;
}

/** The CRC64NVME of A followed by B, from crc(A), crc(B) and B's length in bytes (BigInts, the length a number). */
export function crc64Combine(crcA, crcB, lengthB) {
  if (lengthB === 0) return crcA;
  return multiplyModP(shiftOperator(lengthB), crcA) ^ crcB;
}

/** The whole file's CRC from its pieces' CRCs, in order: `pieces` is [{ crc, length }]. */
export function crc64OfPieces(pieces) {
  let crc = null;
  for (const { crc: piece, length } of pieces) crc = crc === null ? piece : crc64Combine(crc, piece, length);
  return crc;
}

/** S3's form: base64 of the 8 big-endian bytes. */
export function crc64ToBase64(crc) {
  let binary = '';
  for (let shift = 56n; shift >= 0n; shift -= 8n) binary += String.fromCharCode(Number((crc >> shift) & 0xffn));
  return btoa(binary);
}

export function crc64FromBase64(text) {
  const binary = atob(text);
  if (binary.length !== 8) throw new RangeError(`A CRC64NVME is 8 bytes, not ${binary.length}`);
  let crc = 0n;
  for (let i = 0; i < 8; i++) crc = (crc << 8n) | BigInt(binary.charCodeAt(i));
  return crc;
}
