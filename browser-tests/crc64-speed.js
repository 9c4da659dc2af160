// CRC64NVME speed in Chromium: `node browser-tests/crc64-speed.js [MiB]` prints MiB/s of the client's crc64.js on
// the main thread and through its worker (the way uploads use it: the buffer transferred there and back), beside a
// byte-at-a-time table for scale. AWS_CRC64_JS=path/to/Crc64NvmeJs.js (from @aws-sdk/checksums' dist-es) adds the
// AWS SDK's pure-JS implementation to the comparison. No API server or emulators needed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The harness wants the API's URL, which this script does not use.
process.env.API_URL ??= 'http://127.0.0.1:0';
const { launchBrowser } = await import('./lib/harness.js');

const here = path.dirname(fileURLToPath(import.meta.url));
const clientDir = path.join(here, '..', 'client');
const ORIGIN = 'http://crc64-speed.test';
const mib = Number(process.argv[2] ?? 64);

const browser = await launchBrowser();
try {
  const page = await browser.newPage();
  await page.route(`${ORIGIN}/**`, async (route) => {
    const name = new URL(route.request().url()).pathname.slice(1);
    const file = name === 'aws.js' ? process.env.AWS_CRC64_JS : name && path.join(clientDir, name);
    if (!name) return route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>crc64</title>' });
    try {
      route.fulfill({ contentType: 'text/javascript', body: await readFile(file) });
    } catch {
      route.fulfill({ status: 404, body: '' });
    }
  });
  await page.goto(`${ORIGIN}/`);
  const figures = await page.evaluate(
    async ({ mib, withAws }) => {
      const { crc64nvme } = await import('/crc64.js');
      const { createHasher } = await import('/md5.js');
      const bytes = new Uint8Array(mib * 1024 * 1024);
      for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
      // The best of five runs (the first also warms the JIT up): the machine may be busy with other work.
      const speed = async (run, size = bytes.length) => {
        let best = Infinity;
        for (let i = 0; i < 5; i++) {
          const start = performance.now();
          await run();
          best = Math.min(best, performance.now() - start);
        }
        return size / (1024 * 1024) / (best / 1000);
      };
      const figures = {};
      const expected = crc64nvme(bytes);
      figures['client crc64.js, slicing-by-8 on 32-bit halves (main thread)'] = await speed(() => crc64nvme(bytes));

      const hasher = await createHasher();
      let buffer = bytes.slice().buffer;
      figures['client crc64.js in its worker, 4 MiB chunks, buffers transferred both ways'] = await speed(async () => {
        const chunk = 4 * 1024 * 1024;
        for (let start = 0; start < buffer.byteLength; start += chunk) {
          const piece = buffer.slice(start, start + chunk);
          await hasher.crc64(piece);
        }
      });
      hasher.close();

      const table = [];
      for (let n = 0n; n < 256n; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ 0x9a6c9329ac4bc9b5n : c >> 1n;
        table.push([Number(c >> 32n), Number(c & 0xffffffffn)]);
      }
      const hi = Int32Array.from(table, ([h]) => h);
      const lo = Int32Array.from(table, ([, l]) => l);
      const bytewise = (data) => {
        let h = -1;
        let l = -1;
        for (let i = 0; i < data.length; i++) {
          const n = (l ^ data[i]) & 0xff;
          l = ((l >>> 8) | (h << 24)) ^ lo[n];
          h = (h >>> 8) ^ hi[n];
        }
        return [h, l];
      };
      const small = bytes.subarray(0, Math.min(bytes.length, 16 * 1024 * 1024));
      figures['byte at a time, 32-bit halves (main thread)'] = await speed(() => bytewise(small), small.length);

      if (withAws) {
        const { Crc64NvmeJs } = await import('/aws.js');
        const aws = () => {
          const crc = new Crc64NvmeJs();
          crc.update(bytes);
          return crc.digest();
        };
        const digest = await aws();
        const value = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
        if (BigInt(`0x${value}`) !== expected) throw new Error('the AWS SDK and crc64.js disagree');
        figures["@aws-sdk/checksums' Crc64NvmeJs, slicing-by-8 (main thread)"] = await speed(aws);
      }
      return figures;
    },
    { mib, withAws: Boolean(process.env.AWS_CRC64_JS) },
  );
  console.log(`CRC64NVME in ${await browser.version()}, ${mib} MiB of random bytes:`);
  for (const [what, speed] of Object.entries(figures)) console.log(`  ${speed.toFixed(0).padStart(6)} MiB/s  ${what}`);
} finally {
  await browser.close();
}
