// The hashing worker: keeps one incremental MD5 (the sequential mode) and computes chunks' CRC64NVMEs (the parallel
// and direct modes) off the main thread. Messages are handled in arrival order, so the page can queue chunks without
// waiting; every reply carries the request's id. A CRC's buffer is transferred back, to be sent afterwards.
import { createMd5 } from './md5.js';
import { crc64nvme, crc64ToBase64 } from './crc64.js';

const md5 = createMd5();

self.onmessage = ({ data: { id, op, buffer, state } }) => {
  try {
    if (op === 'crc64') {
      self.postMessage({ id, result: { crc: crc64ToBase64(crc64nvme(buffer)), buffer } }, [buffer]);
    } else {
      self.postMessage({ id, result: md5[op](op === 'append' ? buffer : state) });
    }
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};

self.postMessage({ ready: true });
